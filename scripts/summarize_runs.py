"""Mean and standard deviation of test results over runs (e.g. seeds); prints a table, writes JSON.

    python scripts/summarize_runs.py runs/nbody_gp_s0 runs/nbody_gp_s1 runs/nbody_gp_s2 \
        --output docs/results/nbody_results.json

Each run directory needs the ``results.json`` that ``segnn train`` writes at the end. Every
numeric entry those files share is summarised (sample standard deviation, n - 1); the
per-run values are kept in the JSON beside the resolved seed and the run's name.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml


def load_run(run_dir: Path) -> dict:
    """``results.json`` of a run plus its seed (from ``config.yaml``) and name."""
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path} not found: has the run finished?")
    results = json.loads(results_path.read_text())
    config_path = run_dir / "config.yaml"
    seed = yaml.safe_load(config_path.read_text()).get("seed") if config_path.is_file() else None
    return {"run": run_dir.name, "seed": seed, **results}


def summarize(runs: list[dict]) -> dict:
    """``{key: {"mean", "std", "values"}}`` for every numeric key present in all runs."""
    keys = [
        key
        for key, value in runs[0].items()
        if isinstance(value, int | float) and not isinstance(value, bool) and key != "seed"
    ]
    summary = {}
    for key in keys:
        if all(isinstance(run.get(key), int | float) for run in runs):
            values = [float(run[key]) for run in runs]
            summary[key] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "values": values,
            }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", type=Path, nargs="+", help="run directories")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    try:
        runs = [load_run(run_dir) for run_dir in args.runs]
    except (FileNotFoundError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    summary = summarize(runs)
    width = max(len(key) for key in summary)
    print(f"{len(runs)} runs: {', '.join(run['run'] for run in runs)}")
    for key, entry in summary.items():
        print(f"{key:<{width}}  {entry['mean']:.6g} ± {entry['std']:.2g}")
    if args.output is not None:
        args.output.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
