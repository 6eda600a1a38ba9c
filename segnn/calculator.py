"""An ASE calculator backed by a trained segnn energy model."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from ase.calculators.calculator import Calculator, all_changes

from segnn.api import EnergyModel, load_model


class SEGNNCalculator(Calculator):
    """Energies (eV) and forces (eV/Å, ``-dE/dx`` by autograd) from a segnn :class:`EnergyModel`.

    ``model``: an :class:`EnergyModel` or the path of a checkpoint trained on energies
    (``segnn train --config configs/ethanol_forces.yaml``). ``device``: ``None`` picks CUDA when
    available. ``dtype``: the network's precision; float64 (default) for molecular dynamics and
    finite-difference checks. The radius graph is rebuilt at every call, so atoms may move freely
    in and out of the cutoff. Works with ``ase.optimize`` and ``ase.md``; periodic cells are not
    supported.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(
        self,
        model: EnergyModel | str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(model, (str, Path)):
            model = load_model(model)
        else:
            model = copy.deepcopy(model)
        if not isinstance(model, EnergyModel):
            raise TypeError(
                "SEGNNCalculator needs an energy model (model.task 'energy', trained on "
                f"energies/forces); got a {type(model).__name__} for "
                f"{getattr(model, 'target', {}).get('name', 'another target')!r}"
            )
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.network.to(dtype=dtype)  # the float64 references and scale stay float64
        self.model = model.to(device).eval()

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        (batch,) = self.model.batches([self.atoms], batch_size=1)
        output = self.model(batch, forces=True)
        energy = float(output["energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": output["forces"].double().cpu().numpy(),
        }
