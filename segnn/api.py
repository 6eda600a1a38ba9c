"""Serving trained models: ``load_model(path).predict(atoms)`` with units."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from ase import Atoms
from ase.data import chemical_symbols
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from segnn.checkpoint import load_checkpoint
from segnn.config import load_config
from segnn.data import RadiusGraphCollate, atoms_to_graph
from segnn.models import SEGNN


@dataclass(frozen=True)
class Prediction:
    """One molecule's predicted property."""

    formula: str
    name: str  # e.g. "homo"
    value: float
    unit: str  # e.g. "eV"
    description: str

    def __str__(self) -> str:
        return f"{self.formula}: {self.name} = {self.value:.6g} {self.unit} ({self.description})"


class PropertyModel(torch.nn.Module):
    """A :class:`SEGNN` that predicts one molecular property in physical units.

    ``forward(batch) -> [num_graphs]`` returns ``sum_atoms reference[z] + mean + mad * segnn(batch)``:
    the network is trained on ``(y - sum_atoms reference[z] - mean) / mad`` of the training
    targets. ``atom_reference [119]`` holds one value per atomic number (zeros unless fitted).
    """

    def __init__(
        self,
        network: SEGNN,
        mean: float,
        mad: float,
        cutoff: float,
        target: dict[str, str],
        atom_reference: torch.Tensor | None = None,
    ):
        super().__init__()
        self.network = network
        self.mean, self.mad, self.cutoff = float(mean), float(mad), float(cutoff)
        self.target = dict(target)
        self.collate = RadiusGraphCollate(cutoff)
        if atom_reference is None:
            atom_reference = torch.zeros(len(chemical_symbols), dtype=torch.float64)
        self.register_buffer("atom_reference", atom_reference.to(torch.float64))

    def reference(self, batch: Batch) -> torch.Tensor:
        """``[num_graphs]`` sum of the atoms' reference values (float64)."""
        return scatter(
            self.atom_reference[batch.z],
            batch.batch,
            dim=0,
            dim_size=batch.num_graphs,
            reduce="sum",
        )

    def normalized(self, batch: Batch) -> torch.Tensor:
        """``[num_graphs]`` outputs in normalised units ``(y - mean) / mad``."""
        return self.network(batch)[:, 0]

    def forward(self, batch: Batch) -> torch.Tensor:
        """``[num_graphs]`` predictions (float64) in ``target["unit"]``."""
        return self.reference(batch) + self.mean + self.mad * self.normalized(batch).double()

    @torch.no_grad()
    def predict(self, atoms: Atoms | Sequence[Atoms], batch_size: int = 64) -> list[Prediction]:
        """Predict the property of one molecule or a list of them (any ``ase.Atoms``).

        Raises ``ValueError`` naming the element when a molecule holds a species the model was
        not trained on, and for empty structures or non-finite coordinates.
        """
        molecules = [atoms] if isinstance(atoms, Atoms) else list(atoms)
        parameter = next(self.network.parameters())
        graphs = [
            atoms_to_graph(molecule, self.cutoff, dtype=parameter.dtype) for molecule in molecules
        ]
        self.eval()
        values = []
        for start in range(0, len(graphs), batch_size):
            batch = self.collate(graphs[start : start + batch_size]).to(parameter.device)
            values += self(batch).tolist()
        return [
            Prediction(
                molecule.get_chemical_formula(),
                self.target["name"],
                value,
                self.target["unit"],
                self.target["description"],
            )
            for molecule, value in zip(molecules, values)
        ]


def model_from_checkpoint(payload: dict) -> PropertyModel:
    """Rebuild a :class:`PropertyModel` from a loaded checkpoint dictionary."""
    config = load_config(payload["config"])
    network = SEGNN(config.model)
    network.load_state_dict(payload["model_state"])
    normalization = payload["normalization"]
    return PropertyModel(
        network,
        normalization["mean"],
        normalization["mad"],
        config.data.cutoff,
        payload["target"],
        payload["atom_reference"],
    )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> PropertyModel:
    """Load a trained model from a segnn checkpoint (``best.pt`` / ``last.pt`` of a run)."""
    model = model_from_checkpoint(load_checkpoint(path))
    return model.to(device).eval()
