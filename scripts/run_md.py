"""Molecular dynamics with a trained segnn energy model as the ASE calculator.

Example (after ``segnn train --config configs/ethanol_forces.yaml``)::

    python scripts/run_md.py --checkpoint runs/ethanol/best.pt \\
        --structure data/ethanol/ethanol_gfn2xtb_500K.extxyz --steps 1000 --timestep 0.5 \\
        --output runs/ethanol/nve.traj

Periodic boxes (after ``segnn train --config configs/water_pbc.yaml``), at constant pressure::

    python scripts/run_md.py --checkpoint runs/water/best.pt \
        --structure data/water/water32_gfn1xtb_330K.extxyz --ensemble npt --temperature 330 \
        --timestep 1.0 --hydrogen-mass 2.014 --steps 4000 --equilibration 1000

Starts from one frame of ``--structure`` with Maxwell-Boltzmann velocities at
``--temperature`` (seeded), runs velocity-Verlet (NVE), Langevin (NVT) or Langevin NPT
dynamics (``ase.md.langevinbaoab``: BAOAB with a Langevin-Hoover barostat, the cell keeps its
shape; the integrator ``scripts/generate_reference_data.py`` samples its water box with) with
the float64 model, writes the trajectory and prints, as JSON, the energy drift (NVE), the mean
temperature, for periodic boxes the mean density after ``--equilibration`` steps, and the MD
steps per second. ``--hydrogen-mass`` changes the dynamics only (a longer time step), not the
distribution of configurations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.io import read
from ase.io.trajectory import Trajectory
from ase.md.langevin import Langevin
from ase.md.langevinbaoab import LangevinBAOAB
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet
from tqdm import tqdm

from segnn import SEGNNCalculator

AMU_PER_CUBIC_ANGSTROM_IN_G_PER_CM3 = 1.66053906660


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="energy-model checkpoint")
    parser.add_argument("--structure", type=Path, required=True, help="any file ASE reads")
    parser.add_argument("--frame", type=int, default=0, help="frame of --structure to start from")
    parser.add_argument("--ensemble", choices=["nve", "langevin", "npt"], default="nve")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="initial/bath K")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction (1/fs)")
    parser.add_argument("--pressure", type=float, default=1.01325, help="NPT pressure (bar)")
    parser.add_argument(
        "--barostat-time", type=float, default=500.0, help="NPT barostat time scale (fs)"
    )
    parser.add_argument("--hydrogen-mass", type=float, default=None, help="amu, dynamics only")
    parser.add_argument(
        "--equilibration", type=int, default=0, help="steps left out of the mean density"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output", type=Path, default=None, help="trajectory file (.traj)")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    return parser.parse_args(argv)


def mass_density(atoms) -> float:
    """g/cm³ with standard masses (whatever masses the dynamics use)."""
    mass = Atoms(atoms.symbols).get_masses().sum()
    return float(mass / atoms.get_volume() * AMU_PER_CUBIC_ANGSTROM_IN_G_PER_CM3)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    atoms = read(args.structure, index=args.frame)
    atoms.calc = SEGNNCalculator(args.checkpoint, dtype=torch.float64)
    periodic = bool(atoms.pbc.all())
    if args.ensemble == "npt" and not periodic:
        raise SystemExit("--ensemble npt needs a structure periodic in all three directions")
    if args.hydrogen_mass is not None:
        masses = atoms.get_masses()
        masses[atoms.numbers == 1] = args.hydrogen_mass
        atoms.set_masses(masses)
    rng = np.random.default_rng(args.seed)
    # Maxwell-Boltzmann momenta p ~ N(0, m kT) per component, no net drift or spin
    masses = atoms.get_masses()[:, None]
    atoms.set_momenta(
        rng.standard_normal((len(atoms), 3)) * np.sqrt(masses * units.kB * args.temperature)
    )
    Stationary(atoms)
    if not periodic:  # a periodic box has no angular momentum to remove
        ZeroRotation(atoms)
    timestep = args.timestep * units.fs
    if args.ensemble == "nve":
        dynamics = VelocityVerlet(atoms, timestep)
    elif args.ensemble == "npt":
        dynamics = LangevinBAOAB(
            atoms,
            timestep,
            temperature_K=args.temperature,
            externalstress=-args.pressure * units.bar,  # ASE's stress is minus the pressure
            hydrostatic=True,
            T_tau=units.fs / args.friction,
            P_tau=args.barostat_time * units.fs,
            rng=rng,
        )
    else:
        dynamics = Langevin(
            atoms,
            timestep,
            temperature_K=args.temperature,
            friction=args.friction / units.fs,
            rng=rng,
            fixcm=False,
        )
    trajectory = Trajectory(args.output, "w", atoms) if args.output else None
    total, temperature = [atoms.get_total_energy()], [atoms.get_temperature()]
    density = [mass_density(atoms)] if periodic else []
    started = time.perf_counter()
    for _ in tqdm(range(args.steps), desc=f"{args.ensemble} MD", unit="step"):
        dynamics.run(1)
        total.append(atoms.get_total_energy())
        temperature.append(atoms.get_temperature())
        if periodic:
            density.append(mass_density(atoms))
        if trajectory is not None:
            trajectory.write(atoms)
    seconds = time.perf_counter() - started
    if trajectory is not None:
        trajectory.close()
    total_energy = np.array(total)
    times_ps = np.arange(len(total)) * args.timestep / 1000
    summary = {
        "ensemble": args.ensemble,
        "steps": args.steps,
        "timestep_fs": args.timestep,
        "initial_temperature_K": args.temperature,
        "mean_temperature_K": float(np.mean(temperature)),
        "total_energy_start_eV": float(total_energy[0]),
        "total_energy_end_minus_start_meV": 1000 * float(total_energy[-1] - total_energy[0]),
        "total_energy_max_deviation_meV": 1000
        * float(np.abs(total_energy - total_energy[0]).max()),
        "total_energy_fluctuation_std_meV": 1000 * float(total_energy.std()),
        "drift_slope_meV_per_ps": 1000 * float(np.polyfit(times_ps, total_energy, 1)[0]),
        "steps_per_second": args.steps / seconds,
        "atoms": len(atoms),
        "finite": bool(np.isfinite(total_energy).all()),
        "threads": torch.get_num_threads(),
    }
    if periodic:
        sampled = np.array(density[args.equilibration + 1 :] or density)
        summary["mean_density_g_per_cm3"] = float(sampled.mean())
        summary["density_std_g_per_cm3"] = float(sampled.std())
        summary["density_samples"] = len(sampled)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0 if summary["finite"] else 1


if __name__ == "__main__":
    sys.exit(main())
