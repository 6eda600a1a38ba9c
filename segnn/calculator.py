"""An ASE calculator backed by a trained segnn energy model."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from segnn.checkpoint import load_checkpoint, model_from_checkpoint
from segnn.data.atoms import VOIGT_COLUMNS, VOIGT_ROWS
from segnn.models import SEGNN, EnergyModel, use_backend


class SEGNNCalculator(Calculator):
    """Energies (eV) and forces (eV/Å, ``-dE/dx`` by autograd) from a segnn :class:`EnergyModel`,
    or from a committee of them.

    ``model``: an :class:`EnergyModel` (e.g. ``segnn.build_model(config)`` of a force-field
    config, or a trained one) or the path of a checkpoint trained on energies (``segnn train
    --config configs/ethanol_forces.yaml``); or a list of them, a *committee* (e.g. the same
    config trained with several seeds). ``device``: ``None`` picks CUDA when available.
    ``backend``: how the model computes (:mod:`segnn.backends`; ``auto``: the fastest that gives
    forces on the device). ``dtype``: the network's precision; float64 (default) for molecular dynamics and
    finite-difference checks. The neighbour list is rebuilt at every call, so atoms may move freely
    in and out of the cutoff. Periodic cells (``atoms.pbc``) use every image within the cutoff;
    fully periodic cells also get the ``stress`` (ASE's Voigt order ``xx, yy, zz, yz, xz, xy``,
    eV/Å³, ``(1/V) dE/dε`` by autograd), for NPT dynamics and cell relaxation; partially
    periodic ones (slabs, wires) have no volume to divide by and no stress. Works with
    ``ase.optimize`` and ``ase.md``.

    A committee's results are the means over its models, and ``results`` also holds their
    spread (standard deviation over the models): ``energy_spread`` (eV) and ``forces_spread``
    ``[N]`` (eV/Å, per atom: the root mean square over the models of the distance of each
    model's force vector from the mean). Where the models disagree the structure is unlike
    their training data: the frames with the largest ``forces_spread.max()`` are the ones to
    compute with the reference method and add (``docs/forcefields.md``).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self,
        model: EnergyModel | str | Path | Sequence[EnergyModel | str | Path],
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        backend: str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        members = (
            list(model) if isinstance(model, Sequence) and not isinstance(model, str) else [model]
        )
        if not members:
            raise ValueError("SEGNNCalculator needs a model, or a committee of at least one")
        self.models = [energy_model(member, device, dtype) for member in members]
        self.backend = use_backend(self.models[0], backend, forces=True)  # chosen once
        for member in self.models[1:]:
            use_backend(member, self.backend, forces=True)

    @property
    def model(self) -> EnergyModel:
        """The (first) model."""
        return self.models[0]

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        properties = properties or ["energy"]
        stress = "stress" in properties
        if stress and not self.atoms.pbc.all():
            raise PropertyNotImplementedError(
                "stress needs a cell periodic in all three directions (atoms.pbc)"
            )
        energies, forces, stresses = [], [], []
        for member in self.models:
            (batch,) = member.batches([self.atoms], batch_size=1)
            output = member(batch, forces=True, stress=stress)
            energies.append(float(output["energy"][0]))
            forces.append(output["forces"].double().cpu().numpy())
            if stress:
                sigma = output["stress"][0].double().cpu().numpy()
                stresses.append(sigma[VOIGT_ROWS, VOIGT_COLUMNS])
        energy = float(np.mean(energies))
        mean_forces = np.mean(forces, axis=0)
        self.results = {"energy": energy, "free_energy": energy, "forces": mean_forces}
        if stress:
            self.results["stress"] = np.mean(stresses, axis=0)
        if len(self.models) > 1:
            deviation = np.linalg.norm(np.stack(forces) - mean_forces, axis=-1)  # [M, N]
            self.results["energy_spread"] = float(np.std(energies))
            self.results["forces_spread"] = np.sqrt((deviation**2).mean(axis=0))


def energy_model(model: EnergyModel | str | Path, device, dtype: torch.dtype) -> EnergyModel:
    """An evaluation copy of ``model`` (or of the checkpoint at that path) on ``device`` with
    its network in ``dtype``; ``TypeError`` for anything but an energy model."""
    if isinstance(model, (str, Path)):
        model = model_from_checkpoint(load_checkpoint(model))
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
    model.network.to(dtype=dtype)  # the float64 references and scale stay float64
    return model.to(device).eval()
