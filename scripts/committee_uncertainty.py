"""Does a committee's spread find the frames it gets wrong? Rank correlation on a test split.

A committee (several force-field checkpoints of one recipe, e.g. trained with different
``seed``) is evaluated through ``SEGNNCalculator`` (float64) on the test split of ``--config``
(the split ``segnn train`` uses). For each test frame: the committee mean's force error (MAE
per component, and the largest error on one atom) and the spread the calculator reports
(``forces_spread``, mean and max over atoms). The Spearman rank correlation between spread and
error says how well the spread picks the frames (and atoms) to send to the reference method.
Writes ``--output`` (JSON) and a scatter plot beside it (PNG). Example::

    for seed in 0 1 2 3; do
        segnn train --config configs/ethanol_forces.yaml --set seed=$seed \\
            --set train.run_name=ethanol_seed$seed
    done
    python scripts/committee_uncertainty.py --config configs/ethanol_forces.yaml \\
        --checkpoints runs/ethanol_seed*/best.pt --output committee.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read
from scipy.stats import spearmanr

from segnn import SEGNNCalculator
from segnn.config import load_config
from segnn.data.atoms import frame_value
from segnn.data.split import data_split
from segnn.models import EnergyModel


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, required=True, help="the members' training config")
    parser.add_argument(
        "--checkpoints", type=Path, nargs="+", required=True, help="the committee (≥ 2)"
    )
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--output", type=Path, required=True, help="results JSON (and .png)")
    return parser.parse_args(argv)


def split_frames(config_path: Path, split: str) -> tuple[list[Atoms], str]:
    """The frames of ``split`` of a force-field config, as ``segnn train`` splits them, and
    the config's forces key."""
    data = load_config(config_path).data
    frames = read(data.path, ":")
    indices = data_split(len(frames), data)[split]
    return [frames[int(i)] for i in indices], data.forces_key


def committee_errors(
    members: Sequence[EnergyModel | str | Path], frames: list[Atoms], forces_key: str
) -> dict[str, np.ndarray]:
    """Per frame ``[F]``: ``mae`` (committee mean's force MAE per component, eV/Å),
    ``max_error`` (largest error on one atom, eV/Å), ``mean_spread`` and ``max_spread`` (of
    ``forces_spread``); per atom ``[ΣN]``: ``atom_error`` (error norm) and ``atom_spread``;
    per member ``[M]``: ``member_mae``."""
    calculator = SEGNNCalculator(list(members))
    single = [SEGNNCalculator([member]) for member in members]
    rows: dict[str, list] = {key: [] for key in ("mae", "max_error", "mean_spread", "max_spread")}
    atom_error, atom_spread, member_errors = [], [], [[] for _ in members]
    for frame in frames:
        reference = np.asarray(frame_value(frame, forces_key, per_atom=True), dtype=float)
        bare = Atoms(frame.symbols, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
        calculator.calculate(bare, ["energy", "forces"])
        error = calculator.results["forces"] - reference
        spread = calculator.results["forces_spread"]
        norms = np.linalg.norm(error, axis=1)
        rows["mae"].append(np.abs(error).mean())
        rows["max_error"].append(norms.max())
        rows["mean_spread"].append(spread.mean())
        rows["max_spread"].append(spread.max())
        atom_error.append(norms)
        atom_spread.append(spread)
        for member, errors in zip(single, member_errors):
            member.calculate(bare, ["energy", "forces"])
            errors.append(np.abs(member.results["forces"] - reference))
    result = {key: np.array(values) for key, values in rows.items()}
    result["atom_error"] = np.concatenate(atom_error)
    result["atom_spread"] = np.concatenate(atom_spread)
    result["member_mae"] = np.array([np.concatenate(errors).mean() for errors in member_errors])
    return result


def summary(errors: dict[str, np.ndarray]) -> dict[str, float]:
    """Spearman correlations of spread against error and the MAEs (meV/Å)."""

    def rho(a: np.ndarray, b: np.ndarray) -> float:
        return float(spearmanr(a, b).statistic)

    return {
        "frames": len(errors["mae"]),
        "committee_force_mae_meV_per_A": 1000 * float(errors["mae"].mean()),
        "member_force_mae_meV_per_A": [1000 * float(value) for value in errors["member_mae"]],
        "spearman_frame_mean_spread_vs_mae": rho(errors["mean_spread"], errors["mae"]),
        "spearman_frame_max_spread_vs_max_error": rho(errors["max_spread"], errors["max_error"]),
        "spearman_atom_spread_vs_error": rho(errors["atom_spread"], errors["atom_error"]),
        "worst_decile_frames_found_by_spread": worst_found(errors["mean_spread"], errors["mae"]),
    }


def worst_found(spread: np.ndarray, error: np.ndarray, fraction: float = 0.1) -> float:
    """Of the ``fraction`` of frames with the largest error, the share that are also among the
    ``fraction`` with the largest spread (chance: ``fraction``)."""
    count = max(1, int(round(fraction * len(error))))
    worst = set(np.argsort(error)[-count:])
    flagged = set(np.argsort(spread)[-count:])
    return len(worst & flagged) / count


def scatter(errors: dict[str, np.ndarray], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 4))
    axes[0].scatter(1000 * errors["mean_spread"], 1000 * errors["mae"], s=8)
    axes[0].set(
        xlabel="committee spread, mean over atoms (meV/Å)",
        ylabel="force MAE of the mean (meV/Å)",
        title="test frames",
    )
    axes[1].scatter(1000 * errors["atom_spread"], 1000 * errors["atom_error"], s=2, alpha=0.4)
    axes[1].set(
        xlabel="committee spread (meV/Å)",
        ylabel="force error |ΔF| (meV/Å)",
        xscale="log",
        yscale="log",
        title="test atoms",
    )
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if len(args.checkpoints) < 2:
        print("--checkpoints needs at least two models for a spread", file=sys.stderr)
        return 2
    frames, forces_key = split_frames(args.config, args.split)
    if not forces_key:
        print(f"{args.config} trains no forces (data.forces_key)", file=sys.stderr)
        return 2
    errors = committee_errors(args.checkpoints, frames, forces_key)
    result = {
        "config": str(args.config),
        "checkpoints": [str(path) for path in args.checkpoints],
        "split": args.split,
        **summary(errors),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    scatter(errors, args.output.with_suffix(".png"))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
