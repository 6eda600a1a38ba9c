"""Generate energy/force(/stress) reference data by molecular dynamics with GFN-xTB.

Two systems, both through the ``tblite`` package and its ASE calculator
(``pip install 'segnn[xtb]'``):

* one molecule in Langevin dynamics, frames with energy (eV) and forces (eV/Å): a name that
  ``ase.build.molecule`` knows (``--molecule``, default ethanol), a SMILES string
  (``--smiles``: hydrogens added, a 3D start embedded by RDKit's ETKDG from ``--seed`` and relaxed
  in the MMFF94 force field) or any structure file ASE reads (``--structure``);
* a periodic box of liquid water (``--water-molecules N``) in NPT dynamics
  (Langevin BAOAB with a Langevin-Hoover barostat, ``ase.md.langevinbaoab``: temperature
  and pressure held, the cell keeps its shape and breathes), frames with
  energy, forces and stress (eV/Å³, ASE's sign: positive under tension); the frames' mean density
  is the reference method's density at that temperature and pressure.

Every ``--interval``-th step after ``--equilibration`` steps is written as extended XYZ. The
committed data sets were made with::

    python scripts/generate_reference_data.py --output data/ethanol/ethanol_gfn2xtb_500K.extxyz
    python scripts/generate_reference_data.py --water-molecules 32 --method GFN1-xTB \\
        --temperature 330 --timestep 1.0 --hydrogen-mass 2.014 --interval 5 --frames 400 \\
        --equilibration 1500 --output data/water/water32_gfn1xtb_330K.extxyz
    python scripts/generate_reference_data.py --smiles "CC(=O)NC(C)C(=O)NC" \
        --output data/dipeptide/alanine_dipeptide_gfn2xtb_500K.extxyz

``--hydrogen-mass`` changes only the dynamics: configurations are distributed by the potential
energy alone, so heavier hydrogens allow a longer time step without changing what is sampled
(the frames are written with standard masses). Everything is seeded and tblite runs on one
thread (its multi-threaded SCF sums in varying order, and MD amplifies 1e-11 eV differences), so
the same command with the same tblite and ASE versions writes a byte-identical file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from ase.io import read, write
from ase.md.md import MolecularDynamics
from ase.md.velocitydistribution import Stationary, ZeroRotation
from tqdm import tqdm

WATER_DENSITY = 0.99705  # g/cm³ at 298 K, the starting density of a water box
AMU_PER_CUBIC_ANGSTROM_IN_G_PER_CM3 = 1.66053906660  # 1 amu/Å³ in g/cm³
PRESSURE_TIME = 500.0  # fs, the barostat's time scale
CLOSEST_OXYGENS = 2.6  # Å, smallest O–O distance when placing the starting box


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    system = parser.add_argument_group("system (one of)").add_mutually_exclusive_group()
    system.add_argument(
        "--molecule",
        default="CH3CH2OH",
        help="a name ase.build.molecule knows (default: CH3CH2OH, ethanol)",
    )
    system.add_argument(
        "--smiles",
        help="a molecule as SMILES, e.g. 'CC(=O)NC(C)C(=O)NC' (alanine dipeptide); hydrogens "
        "are added and RDKit embeds and relaxes a 3D start",
    )
    system.add_argument(
        "--structure", type=Path, help="a molecule from any structure file ASE reads"
    )
    system.add_argument(
        "--water-molecules",
        type=int,
        metavar="N",
        help="a periodic box of N water molecules in NPT dynamics instead of one molecule",
    )
    parser.add_argument("--frames", type=int, default=1000, help="frames to write")
    parser.add_argument("--temperature", type=float, default=500.0, help="bath temperature (K)")
    parser.add_argument("--pressure", type=float, default=1.01325, help="NPT pressure (bar)")
    parser.add_argument("--timestep", type=float, default=0.5, help="MD time step (fs)")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction (1/fs)")
    parser.add_argument(
        "--hydrogen-mass", type=float, help="hydrogen mass (amu) in the dynamics only"
    )
    parser.add_argument("--interval", type=int, default=10, help="MD steps between written frames")
    parser.add_argument(
        "--equilibration", type=int, default=2000, help="MD steps before the first frame"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", default="GFN2-xTB", help="tblite method")
    parser.add_argument("--output", type=Path, required=True, help="extended XYZ file to write")
    parser.add_argument(
        "--start-only",
        action="store_true",
        help="write only the starting structure (no tblite needed), e.g. to start a model's "
        "dynamics where the reference's began",
    )
    return parser.parse_args(argv)


def water_box(molecules: int, rng: np.random.Generator) -> Atoms:
    """``molecules`` randomly oriented waters placed at random in a cubic box at liquid density,
    no two oxygens (or their periodic images) closer than ``CLOSEST_OXYGENS``."""
    water = molecule("H2O")
    water.positions -= water.positions[0]  # oxygen at the origin
    mass = molecules * water.get_masses().sum()
    side = (mass * AMU_PER_CUBIC_ANGSTROM_IN_G_PER_CM3 / WATER_DENSITY) ** (1 / 3)
    oxygens: list[np.ndarray] = []
    while len(oxygens) < molecules:
        candidate = rng.uniform(0.0, side, 3)
        offsets = np.array(oxygens).reshape(-1, 3) - candidate
        offsets -= side * np.round(offsets / side)
        if (np.linalg.norm(offsets, axis=1) >= CLOSEST_OXYGENS).all():
            oxygens.append(candidate)
    box = Atoms(cell=[side] * 3, pbc=True)
    for oxygen in oxygens:
        rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        box += Atoms(water.symbols, positions=water.positions @ rotation.T + oxygen)
    box.wrap()
    return box


def molecule_from_smiles(smiles: str, seed: int) -> Atoms:
    """A 3D structure of the molecule ``smiles`` with its hydrogens: RDKit's ETKDG embedding
    (seeded), relaxed in the MMFF94 force field. Raises ``ValueError`` for a SMILES that RDKit
    cannot parse or embed."""
    try:
        from rdkit import Chem
        from rdkit.Chem import AllChem
    except ImportError:
        raise ValueError("--smiles needs RDKit: pip install 'segnn[xtb]'") from None
    parsed = Chem.MolFromSmiles(smiles)
    if parsed is None:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}")
    with_hydrogens = Chem.AddHs(parsed)
    parameters = AllChem.ETKDGv3()
    parameters.randomSeed = seed
    if AllChem.EmbedMolecule(with_hydrogens, parameters) != 0:
        raise ValueError(f"RDKit could not embed the SMILES {smiles!r} in 3D")
    AllChem.MMFFOptimizeMolecule(with_hydrogens)
    symbols = [atom.GetSymbol() for atom in with_hydrogens.GetAtoms()]
    return Atoms(symbols, positions=with_hydrogens.GetConformer().GetPositions())


def starting_structure(args: argparse.Namespace, rng: np.random.Generator) -> tuple[Atoms, str]:
    """The system to simulate and its name, from the command line's choice."""
    if args.water_molecules is not None:
        return water_box(args.water_molecules, rng), f"{args.water_molecules} H2O"
    if args.smiles is not None:
        return molecule_from_smiles(args.smiles, args.seed), args.smiles
    if args.structure is not None:
        if not args.structure.is_file():
            raise ValueError(f"structure file not found: {args.structure}")
        atoms = read(args.structure)
        return Atoms(atoms.symbols, positions=atoms.positions), atoms.get_chemical_formula()
    return molecule(args.molecule), args.molecule


def density(atoms: Atoms) -> float:
    """Mass density in g/cm³ (standard masses)."""
    mass = Atoms(atoms.symbols).get_masses().sum()
    return mass / atoms.get_volume() * AMU_PER_CUBIC_ANGSTROM_IN_G_PER_CM3


def dynamics_for(atoms: Atoms, args: argparse.Namespace, rng: np.random.Generator):
    """Langevin dynamics for a molecule, Langevin NPT (BAOAB) for a periodic box."""
    if atoms.pbc.all():
        from ase.md.langevinbaoab import LangevinBAOAB

        # ASE's stress is minus the pressure; the cell keeps its shape and breathes
        return LangevinBAOAB(
            atoms,
            args.timestep * units.fs,
            temperature_K=args.temperature,
            externalstress=-args.pressure * units.bar,
            hydrostatic=True,
            T_tau=1 / args.friction * units.fs,
            P_tau=PRESSURE_TIME * units.fs,
            rng=rng,
        )
    from ase.md.langevin import Langevin

    # centre of mass held by a constraint: Langevin's own fixcm samples a wrong temperature for
    # a molecule this small (ASE >= 3.28 warns about it)
    atoms.set_constraint(FixCom())
    return Langevin(
        atoms,
        args.timestep * units.fs,
        temperature_K=args.temperature,
        friction=args.friction / units.fs,
        rng=rng,
        fixcm=False,
    )


def snapshot(atoms: Atoms, dynamics: MolecularDynamics) -> Atoms:
    """A copy of the current frame with its reference results and standard masses."""
    frame = Atoms(atoms.symbols, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    # the method's own forces -dE/dx: FixCom's projection (F_i - m_i λ with λ = Σ m F / Σ m²)
    # steers the dynamics but is no gradient of the energy, and no model could fit it
    forces = atoms.get_forces(apply_constraint=False)
    results = {"energy": atoms.get_potential_energy(), "forces": forces}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress(voigt=True)
        frame.info["density"] = density(atoms)
    frame.calc = SinglePointCalculator(frame, **results)
    frame.info["time_fs"] = dynamics.get_time() / units.fs
    return frame


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    rng = np.random.default_rng(args.seed)
    try:
        atoms, name = starting_structure(args, rng)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    if args.start_only:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        write(args.output, atoms, format="extxyz")
        print(f"wrote the starting structure ({name}) to {args.output}")
        return 0
    os.environ["OMP_NUM_THREADS"] = "1"  # read when tblite's library loads, just below
    try:
        from tblite.ase import TBLite
    except ImportError:
        print("tblite is not installed: pip install 'segnn[xtb]'", file=sys.stderr)
        return 2
    if args.hydrogen_mass is not None:
        masses = atoms.get_masses()
        masses[atoms.numbers == 1] = args.hydrogen_mass
        atoms.set_masses(masses)
    atoms.calc = TBLite(method=args.method, verbosity=0)
    # Maxwell-Boltzmann momenta p ~ N(0, m kT) per Cartesian component, then no net drift or spin
    masses = atoms.get_masses()[:, None]
    kinetic_scale = np.sqrt(masses * units.kB * args.temperature)
    atoms.set_momenta(rng.standard_normal((len(atoms), 3)) * kinetic_scale)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    dynamics = dynamics_for(atoms, args, rng)
    started = time.monotonic()
    for _ in tqdm(range(args.equilibration), desc="equilibration", unit="step", mininterval=10):
        dynamics.run(1)
    frames = []
    for _ in tqdm(range(args.frames), desc=f"{name} {args.method}", unit="frame", mininterval=10):
        dynamics.run(args.interval)
        frames.append(snapshot(atoms, dynamics))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write(args.output, frames, format="extxyz")
    steps = args.equilibration + args.frames * args.interval
    summary = f"wrote {len(frames)} frames to {args.output} "
    summary += f"({steps} MD steps in {time.monotonic() - started:.1f} s)"
    if atoms.pbc.all():
        densities = np.array([frame.info["density"] for frame in frames])
        summary += f"; density {densities.mean():.4f} ± {densities.std():.4f} g/cm³"
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
