"""Per-system errors of a trained N-body model: which systems make its mean squared error.

    python scripts/nbody_errors.py runs/nbody_gp/best.pt --split test --top 5

The literature's N-body "MSE" averages the squared position errors over every coordinate of
every system of a split; a few hard systems can carry a visible share of it (one test system
made 23% of a model's test MSE, docs/nbody.md). This prints, for the model of a checkpoint, the
distribution of the per-system MSE (mean over its particles and coordinates), the mean
without the worst system, and the worst systems with their closest pair of particles at the
input and the target time. ``--output`` writes the same as JSON, per-system errors included.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from segnn.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from segnn.config import load_config
from segnn.data.nbody import NBody
from segnn.models import DisplacementModel
from segnn.train.tasks import make_task


def closest_pair(positions: torch.Tensor) -> float:
    """The smallest distance between two particles, ``positions [particles, 3]``."""
    distances = torch.cdist(positions, positions)
    return float(
        distances.masked_fill(torch.eye(len(positions), dtype=torch.bool), torch.inf).min()
    )


def analyse(errors: np.ndarray, dataset: NBody, top: int) -> dict:
    """Summary of per-system errors (``NBodyTask.per_system_mse``, ``[len(dataset)]``) and
    the ``top`` worst systems of ``dataset``."""
    worst = np.argsort(errors)[::-1][:top]
    systems = []
    for index in worst.tolist():
        item = dataset[index]
        systems.append(
            {
                "index": index,
                "mse": float(errors[index]),
                "share_of_total": float(errors[index] / errors.sum()),
                "closest_pair_input": closest_pair(item.pos),
                "closest_pair_target": closest_pair(item.y),
            }
        )
    return {
        "num_systems": len(errors),
        "mse": float(errors.mean()),
        "median": float(np.median(errors)),
        "p90": float(np.quantile(errors, 0.9)),
        "p99": float(np.quantile(errors, 0.99)),
        "mse_without_worst": float(np.delete(errors, worst[0]).mean())
        if len(errors) > 1
        else float("nan"),
        "worst": systems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="best.pt or last.pt of an N-body run")
    parser.add_argument("--split", choices=["train", "val", "test"], default="test")
    parser.add_argument("--top", type=int, default=5, help="how many worst systems to list")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    try:
        payload = load_checkpoint(args.checkpoint)
        model = model_from_checkpoint(payload)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not isinstance(model, DisplacementModel):
        print(f"error: {args.checkpoint} is not an N-body model", file=sys.stderr)
        return 2
    task = make_task(load_config(payload["config"]))
    dataset = task.datasets[args.split]
    batches = (
        task.collate([dataset[i] for i in range(start, min(start + 100, len(dataset)))])
        for start in range(0, len(dataset), 100)
    )
    errors = task.per_system_mse(model.eval(), batches).numpy()
    result = {"checkpoint": str(args.checkpoint), "split": args.split}
    result.update(analyse(errors, dataset, args.top))
    print(
        f"{args.split}: {result['num_systems']} systems, MSE {result['mse']:.5f} "
        f"(median {result['median']:.5f}, 90th percentile {result['p90']:.5f}, "
        f"99th {result['p99']:.5f}); without the worst system {result['mse_without_worst']:.5f}"
    )
    print("worst systems: index, MSE, share of the total, closest pair at input / target")
    for system in result["worst"]:
        print(
            f"  {system['index']:6d}  {system['mse']:.4f}  {system['share_of_total']:6.1%}  "
            f"{system['closest_pair_input']:.3f} / {system['closest_pair_target']:.3f}"
        )
    if args.output is not None:
        result["per_system_mse"] = errors.tolist()
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
