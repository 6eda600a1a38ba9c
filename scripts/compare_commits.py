"""A/B timing of the working tree against an earlier commit, both loaded in one process.

The baseline's ``segnn`` package is exported with ``git archive`` into a temporary folder and
imported as ``segnn_baseline`` (its C++ kernels renamed too, so both builds load side by
side). Each side builds its own task from ``--config`` (QM9 by default), the baseline model
takes the working tree's initial weights, both are given ``--backend`` (default ``auto``), and
then, in alternating turns (A B, B A, ...) so that drifts of the machine's speed hit both
alike: a training step (forward, backward, Adam) on a batch of ``--batch`` structures, and a
no-grad forward of ``--inference-batch``. Reported: each side's median, and the quartiles of
the per-turn ratio baseline / working tree (above 1: the working tree is faster).

    python scripts/compare_commits.py --baseline d6e7315 --threads 2 --output ab.json
"""

from __future__ import annotations

import argparse
import importlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from segnn.files import report_json

ROOT = Path(__file__).resolve().parents[1]


def export_baseline(commit: str, folder: Path) -> None:
    """``segnn/`` of ``commit`` as the package ``segnn_baseline`` in ``folder``, its imports and
    its kernels' op namespace renamed."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "segnn"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    package = folder / "segnn_baseline"
    (folder / "segnn").rename(package)
    for path in package.rglob("*"):
        if path.suffix not in (".py", ".cpp"):
            continue
        text = path.read_text()
        text = re.sub(r"(?<![\w.])segnn(?=\.\w|\s+import|$)", "segnn_baseline", text, flags=re.M)
        text = text.replace("segnn_frame", "segnn_baseline_frame")
        path.write_text(text)


def side(package: str, config_path: str, overrides: list[str], sizes: tuple[int, int]) -> dict:
    """One side's task, batches and model (seed 0)."""
    config = importlib.import_module(f"{package}.config").load_config(config_path, overrides)
    torch.manual_seed(0)
    task = importlib.import_module(f"{package}.train.tasks").make_task(config)
    dataset = task.datasets["train"]
    batches = {size: task.collate([dataset[i] for i in range(size)]) for size in sizes}
    torch.manual_seed(0)
    return {
        "package": package,
        "config": config,
        "task": task,
        "batches": batches,
        "model": task.build_model(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", required=True, help="commit to compare with")
    parser.add_argument("--config", default="configs/qm9.yaml")
    parser.add_argument("--backend", default="auto", help="backend name on both sides")
    parser.add_argument("--batch", type=int, default=128, help="structures per training step")
    parser.add_argument("--inference-batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=20, help="turns per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = (args.batch, args.inference_batch)
    subset = f"data.subset={{train: {max(sizes)}, val: 1, test: 1}}"
    with tempfile.TemporaryDirectory() as folder:
        export_baseline(args.baseline, Path(folder))
        sys.path.insert(0, folder)
        sides = {
            "baseline": side("segnn_baseline", args.config, [subset], sizes),
            "working_tree": side("segnn", args.config, [subset], sizes),
        }
        sides["baseline"]["model"].load_state_dict(sides["working_tree"]["model"].state_dict())
        for entry in sides.values():
            models = importlib.import_module(f"{entry['package']}.models")
            entry["backend"] = models.use_backend(entry["model"], args.backend).name
            entry["optimizer"] = torch.optim.Adam(
                entry["model"].parameters(), lr=entry["config"].train.lr
            )
        result = run(sides, args)
    result |= {
        "baseline": args.baseline,
        "config": args.config,
        "backends": {name: entry["backend"] for name, entry in sides.items()},
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    report_json(result, args.output)
    return 0


def run(sides: dict, args: argparse.Namespace) -> dict:
    def train_step(entry: dict) -> None:
        entry["model"].train()
        loss = entry["task"].loss(entry["model"], entry["batches"][args.batch])
        entry["optimizer"].zero_grad(set_to_none=True)
        loss.backward()
        entry["optimizer"].step()

    @torch.no_grad()
    def inference(entry: dict) -> None:
        entry["model"].eval()
        entry["model"](entry["batches"][args.inference_batch])

    with torch.no_grad():
        outputs = [entry["model"](entry["batches"][args.batch]) for entry in sides.values()]
    if isinstance(outputs[0], dict):  # energy models: energies and forces
        difference = max(float((outputs[0][k] - outputs[1][k]).abs().max()) for k in outputs[0])
    else:
        difference = float((outputs[0] - outputs[1]).abs().max())
    result = {"max_output_difference": difference}
    names = list(sides)
    for function in (train_step, inference):
        for _ in range(args.warmup):
            for name in names:
                function(sides[name])
        times: dict[str, list[float]] = {name: [] for name in names}
        for turn in range(args.repeats):
            for name in names if turn % 2 == 0 else names[::-1]:
                started = time.perf_counter()
                function(sides[name])
                times[name].append(time.perf_counter() - started)
        ratios = [b / w for b, w in zip(times["baseline"], times["working_tree"])]
        result[function.__name__] = {
            "baseline_median_ms": 1000 * statistics.median(times["baseline"]),
            "working_tree_median_ms": 1000 * statistics.median(times["working_tree"]),
            "baseline_over_working_tree_quartiles": [
                round(value, 3) for value in statistics.quantiles(ratios, n=4)
            ],
            "turns_working_tree_faster": sum(ratio > 1 for ratio in ratios),
            "turns": args.repeats,
        }
    return result


if __name__ == "__main__":
    sys.exit(main())
