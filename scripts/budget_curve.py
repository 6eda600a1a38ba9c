"""Test error after equal training budgets: one run per budget, the schedule fitted to each.

    python scripts/budget_curve.py --config configs/qm9.yaml --set data.target=homo \
        --minutes 3 6 12 --output docs/qm9_homo_budget_curve

Each budget is its own ``segnn train`` run with ``train.max_minutes`` set to it, so its
learning-rate schedule decays over that budget (a 3-minute run is not the first 3 minutes of a
12-minute one). Runs go one after the other on the same machine; each ends with the test
evaluation of its best checkpoint. Writes ``OUTPUT.json`` (per budget: test MAE, steps,
training seconds, run directory) and ``OUTPUT.png`` (test MAE against minutes of training).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from segnn.cli import add_override_option  # noqa: E402


def run_budgets(config_path: Path, overrides: list[str], minutes: list[float]) -> list[dict]:
    """Train once per budget; returns each run's test results with its budget."""
    from segnn.config import load_config
    from segnn.train import train_from_config

    points = []
    for budget in minutes:
        config = load_config(config_path, [*overrides, f"train.max_minutes={budget}"])
        results = train_from_config(config)
        points.append({"minutes": budget, **results})
    return points


def plot(points: list[dict], output: Path, title: str) -> None:
    unit = points[0].get("unit", "")
    figure, axes = plt.subplots(figsize=(5, 3.5))
    axes.plot([p["minutes"] for p in points], [p["test_mae"] for p in points], "o-")
    for point in points:
        axes.annotate(
            f"{point['test_mae']:.1f}",
            (point["minutes"], point["test_mae"]),
            textcoords="offset points",
            xytext=(4, 4),
        )
    axes.set_xlabel("minutes of training")
    axes.set_ylabel(f"test MAE ({unit})")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(output, dpi=150)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, required=True, help="YAML config of the runs")
    add_override_option(parser, "config override for every run, e.g. --set data.target=homo")
    parser.add_argument(
        "--minutes", type=float, nargs="+", default=[3, 6, 12], help="training budgets"
    )
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help="path without suffix: writes OUTPUT.json and OUTPUT.png",
    )
    args = parser.parse_args(argv)
    if not args.config.is_file():
        print(f"error: config file not found: {args.config}", file=sys.stderr)
        return 2
    points = run_budgets(args.config, args.overrides, sorted(args.minutes))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {"config": str(args.config), "overrides": args.overrides, "points": points}
    args.output.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    target = points[0].get("target", "")
    plot(points, args.output.with_suffix(".png"), f"{args.config.name} {target}: equal budgets")
    for point in points:
        print(
            f"{point['minutes']:g} min: test MAE {point['test_mae']:.1f} {point.get('unit', '')} "
            f"after {point['steps']} steps"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
