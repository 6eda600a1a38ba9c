"""Energies and forces of a trained MACE model on the frames of a structure file, through
MACE's own ASE calculator in float64: the MACE side of ``scripts/compare_mace.py``.

It runs in MACE's own environment (``make mace-venv``: mace-torch and its pinned e3nn), not in
segnn's, and imports nothing of segnn::

    .venv-mace/bin/python scripts/mace_predict.py --model mace.model --input test.xyz \\
        --output predictions.npz

The ``.npz`` holds ``energy [S]`` (eV), ``forces [N, 3]`` (eV/Å, the frames' atoms one after
the other) and ``seconds_per_frame`` (the calls after a first, warm-up one).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from ase.io import read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a .model file of mace_run_train")
    parser.add_argument(
        "--input", type=Path, required=True, help="frames to predict (extended XYZ)"
    )
    parser.add_argument("--output", type=Path, required=True, help=".npz file to write")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    from mace.calculators import MACECalculator

    calculator = MACECalculator(
        model_paths=str(args.model), device=args.device, default_dtype="float64"
    )
    frames = read(args.input, ":")
    energies, forces, seconds = [], [], []
    for frame in frames:
        frame.calc = calculator
        started = time.perf_counter()
        energies.append(frame.get_potential_energy())
        forces.append(frame.get_forces())
        seconds.append(time.perf_counter() - started)
    np.savez(
        args.output,
        energy=np.array(energies),
        forces=np.concatenate(forces),
        seconds_per_frame=float(np.mean(seconds[1:] or seconds)),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
