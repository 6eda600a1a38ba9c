"""Running an exported force field (``.pt2``) with torch, ASE and vesin: no segnn model code.

:class:`ExportedModel` loads the package with ``torch._inductor.aoti_load_package`` and checks
its metadata; :class:`ExportedCalculator` is an ASE calculator around it (neighbour lists by
:func:`segnn.data.neighbours.neighbour_list`, vesin underneath). Inputs and outputs follow
:mod:`segnn.deploy.contract`.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.data import chemical_symbols

from segnn.data.neighbours import neighbour_list
from segnn.deploy.contract import FORMAT

VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])  # ASE's order: xx yy zz yz xz xy


class ExportError(ValueError):
    """A ``.pt2`` that is missing, corrupt, not segnn's, or of another contract version."""


class ExportedModel:
    """An exported force field: ``model(atoms)`` → ``(energy eV, forces [N, 3] eV/Å,
    virial [3, 3] eV)`` as float64 numpy values. ``metadata``: what the file says of itself
    (cutoff, species, dtype, segnn version, config)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise ExportError(f"exported model not found: {path}")
        if not zipfile.is_zipfile(path):
            raise ExportError(f"{path} is not a .pt2 package (corrupt or another file)")
        try:
            self.runner = torch._inductor.aoti_load_package(str(path))
            self.metadata = dict(self.runner.get_metadata())
        except Exception as error:  # noqa: BLE001 - torch raises many types for bad packages
            raise ExportError(f"{path} could not be loaded as a .pt2 package: {error}") from None
        found = self.metadata.get("format")
        if found != FORMAT:
            raise ExportError(
                f"{path} is {'not a segnn export' if found is None else f'format {found!r}'}; "
                f"this segnn reads {FORMAT!r} (export the checkpoint again with segnn export)"
            )
        self.path = path
        self.cutoff = float(self.metadata["cutoff"])
        self.species = json.loads(self.metadata["species"])
        self.dtype = getattr(torch, self.metadata["dtype"])
        self.device = torch.device(self.metadata["device"])

    def __call__(self, atoms) -> tuple[float, np.ndarray, np.ndarray]:
        numbers = atoms.get_atomic_numbers()
        unknown = sorted({chemical_symbols[z] for z in numbers} - set(self.species))
        if unknown:
            raise ValueError(
                f"element(s) {', '.join(unknown)} not known to this model, which was built for "
                f"{', '.join(self.species)}"
            )
        if len(atoms) < 2:
            raise ValueError("an exported model takes structures of at least two atoms")
        positions = atoms.get_positions()
        if not np.isfinite(positions).all():
            raise ValueError("atom positions hold NaN or infinite values")
        pos = torch.tensor(positions, dtype=self.dtype)
        cell = atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3))
        edge_index, shifts = neighbour_list(pos, self.cutoff, cell, atoms.pbc)
        if edge_index.shape[1] == 0:
            raise ValueError(f"no two atoms are closer than the cutoff ({self.cutoff} Å)")
        inputs = (
            pos,
            torch.tensor(numbers, dtype=torch.long),
            edge_index,
            shifts.to(self.dtype),
            torch.tensor(cell, dtype=self.dtype),
        )
        energy, forces, virial = self.runner(*(t.to(self.device) for t in inputs))
        return (
            float(energy),
            forces.detach().double().cpu().numpy(),
            virial.detach().double().cpu().numpy(),
        )


class ExportedCalculator(Calculator):
    """An ASE calculator of an exported force field: energy, forces and, for cells periodic
    in all three directions, stress (``-virial / volume``, ASE's sign and Voigt order)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, path: str | Path, **kwargs):
        super().__init__(**kwargs)
        self.model = ExportedModel(path)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        properties = properties or ["energy"]
        if "stress" in properties and not self.atoms.pbc.all():
            raise PropertyNotImplementedError(
                "stress needs a cell periodic in all three directions (atoms.pbc)"
            )
        energy, forces, virial = self.model(self.atoms)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        if self.atoms.pbc.all():
            volume = abs(np.linalg.det(self.atoms.cell.array))
            if volume < 1e-9:
                raise ValueError("the cell has no volume: stress is undefined")
            self.results["stress"] = -virial[VOIGT] / volume
