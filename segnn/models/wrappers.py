"""Task wrappers: a :class:`SEGNN` with the normalisation of its task, in both directions.

The network learns in normalised units; a wrapper turns its outputs into physical ones and a
batch's targets into the network's units (for the loss), holding the statistics fitted on the
training set as buffers, so they travel with the weights:

* :class:`PropertyModel` — one molecular property: ``y = Σ_atoms E0[z] + mean + mad * out``;
* :class:`EnergyModel` — a potential energy surface: ``E = Σ_atoms E0[z] + scale * Σ_i e_i``,
  forces ``-dE/dx`` by autograd;
* :class:`DisplacementModel` — the N-body system: ``x(t + Δt) = x + out``.

:func:`build_model` is the one map from a config to its wrapper, for training and for loading
checkpoints alike.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ase import Atoms
from ase.data import chemical_symbols
from e3nn import o3
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from segnn.config import Config, ModelConfig, load_config
from segnn.data import RadiusGraphCollate, atoms_to_graph
from segnn.models.segnn import SEGNN


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


class AtomisticModel(torch.nn.Module):
    """A :class:`SEGNN` with per-element reference values and the graph cutoff it was trained
    with; turns ``ase.Atoms`` into batches. ``atom_reference [119]`` (float64) holds one value per
    atomic number (zeros unless fitted). Subclasses set ``target`` (name, unit, description) and
    :meth:`predicted_values`."""

    target: dict[str, str]

    def __init__(self, network: SEGNN, cutoff: float, atom_reference: torch.Tensor | None):
        super().__init__()
        self.network = network
        self.cutoff = float(cutoff)
        self.collate = RadiusGraphCollate(cutoff)
        if atom_reference is None:
            atom_reference = torch.zeros(len(chemical_symbols), dtype=torch.float64)
        self.register_buffer("atom_reference", atom_reference.to(torch.float64).clone())

    def reference(self, batch: Batch) -> torch.Tensor:
        """``[num_graphs]`` sum of the atoms' reference values (float64)."""
        return scatter(
            self.atom_reference[batch.z],
            batch.batch,
            dim=0,
            dim_size=batch.num_graphs,
            reduce="sum",
        )

    def batches(self, molecules: Sequence[Atoms], batch_size: int):
        """Batches of radius graphs for ``molecules``, in the model's dtype and on its device.

        Raises ``ValueError`` for unknown elements, empty structures and non-finite coordinates.
        """
        parameter = next(self.network.parameters())
        graphs = [atoms_to_graph(molecule, None, dtype=parameter.dtype) for molecule in molecules]
        for start in range(0, len(graphs), batch_size):
            yield self.collate(graphs[start : start + batch_size]).to(parameter.device)

    def predicted_values(self, batch: Batch) -> torch.Tensor:
        """``[num_graphs]`` predictions in ``target["unit"]``."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, atoms: Atoms | Sequence[Atoms], batch_size: int = 64) -> list[Prediction]:
        """Predict ``target`` for one molecule or a list of them (any ``ase.Atoms``).

        Raises ``ValueError`` naming the element when a molecule holds a species the model was
        not trained on, and for empty structures or non-finite coordinates.
        """
        molecules = [atoms] if isinstance(atoms, Atoms) else list(atoms)
        self.eval()
        values = [
            value
            for batch in self.batches(molecules, batch_size)
            for value in self.predicted_values(batch).tolist()
        ]
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


class PropertyModel(AtomisticModel):
    """A :class:`SEGNN` that predicts one molecular property in physical units.

    ``forward(batch) -> [num_graphs]`` returns ``Σ_atoms reference[z] + mean + mad * segnn(batch)``;
    :meth:`normalized_targets` is the inverse map, which the network is trained on. ``target``:
    name, unit, description (and the report unit and factor) of the property.
    """

    def __init__(
        self,
        network: SEGNN,
        cutoff: float,
        target: dict[str, Any],
        mean: float = 0.0,
        mad: float = 1.0,
        atom_reference: torch.Tensor | None = None,
    ):
        super().__init__(network, cutoff, atom_reference)
        self.register_buffer("mean", torch.tensor(float(mean), dtype=torch.float64))
        self.register_buffer("mad", torch.tensor(float(mad), dtype=torch.float64))
        self.target = dict(target)

    def normalized(self, batch: Batch) -> torch.Tensor:
        """``[num_graphs]`` outputs in normalised units ``(y - Σ reference - mean) / mad``."""
        return self.network(batch)[:, 0]

    def normalized_targets(self, batch: Batch) -> torch.Tensor:
        """``[num_graphs]`` the batch's targets ``batch.y[:, 0]`` in the network's units (float64)."""
        return (batch.y[:, 0].double() - self.reference(batch) - self.mean) / self.mad

    def forward(self, batch: Batch) -> torch.Tensor:
        """``[num_graphs]`` predictions (float64) in ``target["unit"]``."""
        return self.reference(batch) + self.mean + self.mad * self.normalized(batch).double()

    def predicted_values(self, batch: Batch) -> torch.Tensor:
        return self(batch)


def cell_volumes(cell: torch.Tensor) -> torch.Tensor:
    """``|det cell|`` of cells ``[G, 3, 3]`` as ``[G, 1, 1]`` (to scale per-graph tensors)."""
    return torch.linalg.det(cell).abs()[:, None, None]


class EnergyModel(AtomisticModel):
    """A potential energy surface: ``E = Σ_i reference[z_i] + scale * Σ_i e_i`` (eV) with
    ``e_i`` the per-atom scalar of a ``task: energy`` :class:`SEGNN`, and forces ``F = -dE/dx``
    (eV/Å) by automatic differentiation.

    ``scale`` (eV/Å) is the RMS force of the training set; ``reference`` the per-element energies
    fitted by least squares on it. The network is trained on per-atom energies and forces
    divided by ``scale`` (:meth:`normalized_targets`).
    """

    target = {"name": "energy", "unit": "eV", "description": "potential energy"}

    def __init__(
        self,
        network: SEGNN,
        cutoff: float,
        scale: float = 1.0,
        atom_reference: torch.Tensor | None = None,
    ):
        if network.config.task != "energy":
            raise ValueError(
                f"an EnergyModel needs a network with model.task 'energy', got {network.config.task!r}"
            )
        super().__init__(network, cutoff, atom_reference)
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))

    def normalized(
        self, batch: Batch, forces: bool = True, virial: bool = False, create_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(energy [num_graphs], forces [N, 3], virial [num_graphs, 3, 3])`` in units of
        ``scale``, without the references, in the network's dtype (``None`` where not asked
        for). ``create_graph`` keeps the graph of the derivatives for training on them (double
        backward)."""
        return self.energy_forces_virial(batch, forces, virial, create_graph)

    def energy_forces_virial(
        self, batch: Batch, forces: bool = True, virial: bool = False, create_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(energy [G], forces [N, 3], virial [G, 3, 3])`` in units of ``scale`` (``None``
        where not asked for). The virial ``-dE/dε`` comes from a symmetric strain ``ε`` applied
        to positions and cells (periodic batches, ``cell [G, 3, 3]``), as NequIP and MACE do."""
        data = copy.copy(batch)
        pos = batch.pos.detach().requires_grad_(forces)
        inputs = [pos] if forces else []
        if virial:
            strain = torch.zeros_like(batch.cell, dtype=pos.dtype).requires_grad_(True)
            symmetric = 0.5 * (strain + strain.transpose(1, 2))
            pos = pos + torch.einsum("nc,ncd->nd", pos, symmetric.index_select(0, batch.batch))
            data.cell = batch.cell.to(pos.dtype) + batch.cell.to(pos.dtype) @ symmetric
            inputs.append(strain)
        data.pos = pos
        with torch.set_grad_enabled(bool(inputs) or torch.is_grad_enabled()):
            energy = self.network(data)[:, 0]
            if not inputs:
                return energy, None, None
            gradients = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph)
        force = -gradients[0] if forces else None
        return energy, force, -gradients[-1] if virial else None

    def normalized_targets(
        self, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The batch's ``energy [num_graphs]``, ``forces [N, 3]`` and virial
        ``[num_graphs, 3, 3]`` in the network's units (float64; ``None`` where the batch has no
        forces or stress): ``(E - Σ reference) / scale``, ``F / scale`` and
        ``-stress × volume / scale``."""
        energy = (batch.energy.double() - self.reference(batch)) / self.scale
        forces = batch.forces.double() / self.scale if "forces" in batch else None
        virial = None
        if "stress" in batch and "cell" in batch:
            virial = -batch.stress.double() * cell_volumes(batch.cell.double()) / self.scale
        return energy, forces, virial

    def forward(
        self, batch: Batch, forces: bool = True, stress: bool = False
    ) -> dict[str, torch.Tensor]:
        """``{"energy": [num_graphs] eV, "forces": [N, 3] eV/Å, "stress": [G, 3, 3] eV/Å³}``,
        detached (for evaluation; training uses :meth:`normalized`). Energies are float64,
        forces and stress in the network's dtype; ``forces=False`` leaves the forces out;
        ``stress`` (periodic batches) is ``(1/V) dE/dε`` with ``V`` the cell volume."""
        energy, force, virial = self.energy_forces_virial(batch, forces, stress)
        result = {"energy": (self.reference(batch) + self.scale * energy.double()).detach()}
        if force is not None:
            result["forces"] = (self.scale.to(force.dtype) * force).detach()
        if virial is not None:
            volume = cell_volumes(batch.cell.to(virial.dtype))
            stress_tensor = -virial * self.scale.to(virial.dtype) / volume
            result["stress"] = stress_tensor.detach()
        return result

    def predicted_values(self, batch: Batch) -> torch.Tensor:
        """Potential energies (eV); forces: :class:`segnn.SEGNNCalculator` or :meth:`forward`."""
        return self(batch, forces=False)["energy"]


class DisplacementModel(torch.nn.Module):
    """Predicts future positions as ``pos + segnn(batch)`` (a ``node`` task with ``1x1o``
    output: the displacement of every particle). ``forward(batch) -> [N, 3]``."""

    target = {"name": "positions", "unit": "", "description": "positions 1,000 steps later"}

    def __init__(self, network: SEGNN):
        super().__init__()
        if network.config.task != "node" or network.irreps_out != o3.Irreps("1x1o"):
            raise ValueError(
                "a DisplacementModel needs a node-task network with output_irreps 1x1o"
            )
        self.network = network

    def forward(self, batch: Batch) -> torch.Tensor:
        return batch.pos + self.network(batch)


TaskModel = PropertyModel | EnergyModel | DisplacementModel


def property_target(name: str) -> dict[str, Any]:
    """Name, unit, description, report unit and factor of the QM9 property ``name``."""
    from segnn.data.qm9 import get_target

    target = get_target(name)
    return {
        "name": target.name,
        "unit": target.unit,
        "description": target.description,
        "report_unit": target.report_unit,
        "report_factor": target.report_factor,
    }


def build_model(
    config: Config | ModelConfig | str | Path | dict, **statistics
) -> SEGNN | TaskModel:
    """The model of a config: its task's wrapper around a fresh :class:`SEGNN`
    by ``model.task`` (:class:`DisplacementModel` for ``node``, the N-body system;
    :class:`EnergyModel` for ``energy``; :class:`PropertyModel` of ``data.target`` for
    ``graph``), or the bare network
    for a :class:`ModelConfig` alone. ``config``: a Config, a YAML path or a dict.
    ``statistics``: the wrapper's fitted values (``mean``, ``mad``, ``scale``,
    ``atom_reference``); left out, they are neutral (zero references, unit scales)."""
    if isinstance(config, ModelConfig):
        return SEGNN(config)
    if not isinstance(config, Config):
        config = load_config(config)
    network = SEGNN(config.model, cutoff=config.data.cutoff)
    if config.model.task == "node":
        return DisplacementModel(network, **statistics)
    if config.model.task == "energy":
        return EnergyModel(network, config.data.cutoff, **statistics)
    return PropertyModel(
        network, config.data.cutoff, property_target(config.data.target), **statistics
    )
