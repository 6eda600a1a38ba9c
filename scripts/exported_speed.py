"""Call time of an exported force field (.pt2) against the checkpoint calculator.

Both compute energy, forces and stress of the same periodic water boxes (the committed
96-atom box and a 3,000-atom box of randomly oriented molecules), float64, calls timed in
alternating turns after one warm-up call each; medians and the per-turn ratio are printed as
JSON.

    segnn export tests/data/ethanol_before_backends.pt --output /tmp/ethanol.pt2
    python scripts/exported_speed.py --checkpoint tests/data/ethanol_before_backends.pt \\
        --exported /tmp/ethanol.pt2 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from ase.io import read
from benchmark import water_box  # scripts/benchmark.py

from segnn.calculator import SEGNNCalculator
from segnn.deploy import ExportedCalculator
from segnn.files import report_json

WATER = Path(__file__).resolve().parents[1] / "data" / "water" / "water32_gfn1xtb_330K.extxyz"


def seconds(atoms, calculator) -> float:
    atoms = atoms.copy()
    calculator.reset()  # compute anew: ASE calculators keep the results of unchanged atoms
    atoms.calc = calculator
    started = time.perf_counter()
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--exported", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    calculators = {
        "checkpoint": SEGNNCalculator(args.checkpoint, dtype=torch.float64),
        "exported": ExportedCalculator(args.exported),
    }
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    for name, atoms in {"water_96": read(WATER, index=0), "water_3000": water_box(1000)}.items():
        times = {label: [] for label in calculators}
        for calculator in calculators.values():
            seconds(atoms, calculator)  # warm-up
        for _ in range(args.repeats):
            for label, calculator in calculators.items():
                times[label].append(seconds(atoms, calculator))
        ratios = [c / e for c, e in zip(times["checkpoint"], times["exported"])]
        result[name] = {
            "atoms": len(atoms),
            "checkpoint_median_s": statistics.median(times["checkpoint"]),
            "exported_median_s": statistics.median(times["exported"]),
            "checkpoint_over_exported_per_turn": [round(r, 3) for r in ratios],
        }
    report_json(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
