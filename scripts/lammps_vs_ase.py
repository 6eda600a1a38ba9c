"""The same NVE run driven by LAMMPS (segnn forces through fix external) and by ASE.

Both start from one structure with the velocities LAMMPS draws (``velocity all create``), use
velocity Verlet with the same step and the same float64 calculator, and run ``--steps`` steps
one after the other (one job at a time). Printed as JSON: LAMMPS's forces and pressure tensor
at rest (the virial alone) against the calculator's (relative), the initial kinetic energy in
both, and for each engine the total energy's drift (least-squares slope, meV/ps), its largest
deviation from the start, and steps per second.

    python scripts/lammps_vs_ase.py --checkpoint runs/water/best.pt \\
        --structure data/water/water32_gfn1xtb_330K.extxyz --elements O H --steps 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase.io import read, write
from ase.md.verlet import VelocityVerlet
from ase.units import fs

from segnn.calculator import SEGNNCalculator
from segnn.engines.lammps import input_script, run_lammps
from segnn.files import report_json

COMMANDS = """{velocities}
fix nve all nve
timestep {timestep_ps}
thermo_style custom step etotal pe ke press pxx pyy pzz pxy pxz pyz
thermo {interval}
run {steps}
"""


def by_id(lmp, name: str, count: int) -> np.ndarray:
    values = lmp.numpy.extract_atom(name)[:count]
    return np.array(values[np.argsort(lmp.numpy.extract_atom("id")[:count])])


def summary(times_ps: np.ndarray, energies: np.ndarray, seconds: float, steps: int) -> dict:
    return {
        "drift_slope_meV_per_ps": 1000 * float(np.polyfit(times_ps, energies, 1)[0]),
        "max_deviation_meV": 1000 * float(np.abs(energies - energies[0]).max()),
        "end_minus_start_meV": 1000 * float(energies[-1] - energies[0]),
        "steps_per_s": steps / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--structure", type=Path, required=True, help="first frame is used")
    parser.add_argument("--elements", nargs="+", required=True, help="LAMMPS type order")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--temperature", type=float, default=330.0, help="K, initial velocities")
    parser.add_argument("--interval", type=int, default=10, help="steps between energies")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    atoms = read(args.structure, index=0)
    calculator = SEGNNCalculator(args.checkpoint, dtype=torch.float64)
    result: dict = {
        "checkpoint": str(args.checkpoint),
        "atoms": len(atoms),
        "steps": args.steps,
        "timestep_fs": args.timestep,
        "threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write(
            folder / "box.data", atoms, format="lammps-data", specorder=args.elements, masses=True
        )
        velocity = f"velocity all create {args.temperature} 4928459 dist gaussian mom yes rot yes"

        def script(name: str, velocities: str, steps: int) -> Path:
            commands = COMMANDS.format(
                velocities=velocities,
                steps=steps,
                interval=args.interval,
                timestep_ps=args.timestep / 1000,
            )
            (folder / name).write_text(input_script("box.data", commands))
            return folder / name

        # at rest: LAMMPS's forces and pressure (the virial alone) before any step
        start = run_lammps(script("in.start", "", 0), calculator, args.elements)
        forces = by_id(start, "f", len(atoms))
        pressure = {name: start.get_thermo(name) for name in ("pxx", "pyy", "pzz", "pxy")}
        to_bar = start.extract_global("nktv2p")
        # the velocities LAMMPS draws
        drawn = run_lammps(script("in.velocities", velocity, 0), calculator, args.elements)
        velocities = by_id(drawn, "v", len(atoms)) / (1000 * fs)  # Å/ps → ASE units
        kinetic = drawn.get_thermo("ke")
        # LAMMPS's run
        nve = script("in.nve", velocity, args.steps)
        started = time.perf_counter()
        lmp = run_lammps(nve, calculator, args.elements, log=folder / "log")
        lammps_seconds = time.perf_counter() - started
        rows = [line.split() for line in (folder / "log").read_text().splitlines()]
        table = [row for row in rows if len(row) == 11 and row[0].isdigit()]
        lammps_steps = np.array([int(row[0]) for row in table])
        lammps_energy = np.array([float(row[1]) for row in table])
        del lmp
    reference = atoms.copy()
    reference.calc = calculator
    expected = reference.get_forces()
    stress = reference.get_stress(voigt=False)
    velocities_kinetic = 0.5 * (atoms.get_masses()[:, None] * velocities**2).sum()
    result["first_step_force_max_relative_difference"] = float(
        np.abs(forces - expected).max() / np.abs(expected).max()
    )
    result["first_step_pressure_max_relative_difference"] = max(
        abs(pressure[name] + stress[i, j] * to_bar) / abs(pressure[name])
        for name, (i, j) in {"pxx": (0, 0), "pyy": (1, 1), "pzz": (2, 2), "pxy": (0, 1)}.items()
    )
    result["initial_kinetic_energy_eV"] = {"lammps": kinetic, "ase": float(velocities_kinetic)}
    result["lammps"] = summary(
        lammps_steps * args.timestep / 1000, lammps_energy, lammps_seconds, args.steps
    )
    # ASE's run from the same start
    atoms.calc = calculator
    atoms.set_velocities(velocities)
    energies, times = [atoms.get_total_energy()], [0.0]
    dynamics = VelocityVerlet(atoms, timestep=args.timestep * fs)

    def record() -> None:
        energies.append(atoms.get_total_energy())
        times.append(dynamics.nsteps * args.timestep / 1000)

    dynamics.attach(record, interval=args.interval)
    started = time.perf_counter()
    dynamics.run(args.steps)
    result["ase"] = summary(
        np.array(times[1:]), np.array(energies[1:]), time.perf_counter() - started, args.steps
    )
    report_json(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
