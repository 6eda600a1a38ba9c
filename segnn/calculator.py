"""An ASE calculator backed by a trained segnn energy model."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from ase.calculators.calculator import Calculator, all_changes

from segnn.api import load_model
from segnn.models import SEGNN, EnergyModel, use_backend


class SEGNNCalculator(Calculator):
    """Energies (eV) and forces (eV/Å, ``-dE/dx`` by autograd) from a segnn :class:`EnergyModel`.

    ``model``: an :class:`EnergyModel` (e.g. ``segnn.build_model(config)`` of a force-field
    config, or a trained one) or the path of a checkpoint trained on energies (``segnn train
    --config configs/ethanol_forces.yaml``). ``device``: ``None`` picks CUDA when available.
    ``backend``: how the model computes (:mod:`segnn.backends`; ``auto``: the fastest that gives
    forces on the device). ``dtype``: the network's precision; float64 (default) for molecular dynamics and
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
        backend: str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(model, (str, Path)):
            model = load_model(model, backend="edge_frame")
        else:
            model = copy.deepcopy(model)
        if isinstance(model, SEGNN):
            raise TypeError(
                "SEGNNCalculator needs an EnergyModel, got a bare SEGNN network: "
                "segnn.build_model(config) of a force-field config (model.task 'energy') "
                "returns one"
            )
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
        self.backend = use_backend(self.model, backend, forces=True)

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
