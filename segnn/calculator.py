"""An ASE calculator backed by a trained segnn energy model."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from segnn.api import load_model
from segnn.data.atoms import VOIGT_COLUMNS, VOIGT_ROWS
from segnn.models import SEGNN, EnergyModel, use_backend


class SEGNNCalculator(Calculator):
    """Energies (eV) and forces (eV/Å, ``-dE/dx`` by autograd) from a segnn :class:`EnergyModel`.

    ``model``: an :class:`EnergyModel` (e.g. ``segnn.build_model(config)`` of a force-field
    config, or a trained one) or the path of a checkpoint trained on energies (``segnn train
    --config configs/ethanol_forces.yaml``). ``device``: ``None`` picks CUDA when available.
    ``backend``: how the model computes (:mod:`segnn.backends`; ``auto``: the fastest that gives
    forces on the device). ``dtype``: the network's precision; float64 (default) for molecular dynamics and
    finite-difference checks. The neighbour list is rebuilt at every call, so atoms may move freely
    in and out of the cutoff. Periodic cells (``atoms.pbc``) use every image within the cutoff;
    fully periodic cells also get the ``stress`` (ASE's Voigt order ``xx, yy, zz, yz, xz, xy``,
    eV/Å³, ``(1/V) dE/dε`` by autograd), for NPT dynamics and cell relaxation; partially
    periodic ones (slabs, wires) have no volume to divide by and no stress. Works with
    ``ase.optimize`` and ``ase.md``.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

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
        properties = properties or ["energy"]
        stress = "stress" in properties
        if stress and not self.atoms.pbc.all():
            raise PropertyNotImplementedError(
                "stress needs a cell periodic in all three directions (atoms.pbc)"
            )
        (batch,) = self.model.batches([self.atoms], batch_size=1)
        output = self.model(batch, forces=True, stress=stress)
        energy = float(output["energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": output["forces"].double().cpu().numpy(),
        }
        if stress:
            sigma = output["stress"][0].double().cpu().numpy()
            self.results["stress"] = sigma[VOIGT_ROWS, VOIGT_COLUMNS]
