"""Generate energy/force reference data by Langevin molecular dynamics with GFN2-xTB.

Runs Langevin dynamics of one molecule with the GFN2-xTB tight-binding method (the ``tblite``
package and its ASE calculator: ``pip install 'segnn[xtb]'``) and writes every ``--interval``-th
frame, after ``--equilibration`` steps, as extended XYZ with the energy (eV) and forces (eV/Å)
of that frame. The committed ethanol set was made with the defaults::

    python scripts/generate_reference_data.py --output data/ethanol/ethanol_gfn2xtb_500K.extxyz

Everything is seeded and tblite runs on one thread (its multi-threaded SCF sums in varying
order, and MD amplifies 1e-11 eV differences), so the same command with the same tblite and ASE
versions writes a byte-identical file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from ase import units
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from ase.io import write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation
from tqdm import tqdm


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--molecule",
        default="CH3CH2OH",
        help="a name ase.build.molecule knows (default: CH3CH2OH, ethanol)",
    )
    parser.add_argument("--frames", type=int, default=1000, help="frames to write")
    parser.add_argument("--temperature", type=float, default=500.0, help="Langevin bath (K)")
    parser.add_argument("--timestep", type=float, default=0.5, help="MD time step (fs)")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction (1/fs)")
    parser.add_argument("--interval", type=int, default=10, help="MD steps between written frames")
    parser.add_argument(
        "--equilibration", type=int, default=2000, help="MD steps before the first frame"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", default="GFN2-xTB", help="tblite method")
    parser.add_argument("--output", type=Path, required=True, help="extended XYZ file to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    os.environ["OMP_NUM_THREADS"] = "1"  # read when tblite's library loads, just below
    try:
        from tblite.ase import TBLite
    except ImportError:
        print("tblite is not installed: pip install 'segnn[xtb]'", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    atoms = molecule(args.molecule)
    atoms.calc = TBLite(method=args.method, verbosity=0)
    # Maxwell-Boltzmann momenta p ~ N(0, m kT) per Cartesian component, then no net drift or spin
    masses = atoms.get_masses()[:, None]
    kinetic_scale = np.sqrt(masses * units.kB * args.temperature)
    atoms.set_momenta(rng.standard_normal((len(atoms), 3)) * kinetic_scale)
    Stationary(atoms)
    ZeroRotation(atoms)
    # centre of mass held by a constraint: Langevin's own fixcm samples a wrong temperature for
    # a molecule this small (ASE >= 3.28 warns about it)
    atoms.set_constraint(FixCom())
    dynamics = Langevin(
        atoms,
        args.timestep * units.fs,
        temperature_K=args.temperature,
        friction=args.friction / units.fs,
        rng=rng,
        fixcm=False,
    )
    started = time.monotonic()
    dynamics.run(args.equilibration)
    frames = []
    for _ in tqdm(range(args.frames), desc=f"{args.molecule} {args.method}", unit="frame"):
        dynamics.run(args.interval)
        frame = atoms.copy()
        frame.set_constraint()
        frame.calc = SinglePointCalculator(
            frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
        )
        frame.info["time_fs"] = dynamics.get_time() / units.fs
        frames.append(frame)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write(args.output, frames, format="extxyz")
    steps = args.equilibration + args.frames * args.interval
    print(
        f"wrote {len(frames)} frames to {args.output} "
        f"({steps} MD steps in {time.monotonic() - started:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
