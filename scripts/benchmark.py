"""Speed benchmarks; prints a table and writes JSON.

    python scripts/benchmark.py nbody [--device cpu] [--threads 2] [--output bench.json]

``nbody``: forward time of the N-body G+P model (``configs/nbody.yaml``) per batch of 100
samples, and forward+backward+Adam time per training step, median over repeats after warm-up.
Absolute times depend on the machine: compare numbers measured in one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from segnn.config import load_config
from segnn.data.nbody import FullGraphCollate, NBody
from segnn.train.tasks import make_task


def _timed(function, repeats: int, warmup: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times


def benchmark_nbody(device: torch.device, repeats: int, warmup: int) -> dict:
    config = load_config("configs/nbody.yaml")
    torch.manual_seed(0)
    task = make_task(config)
    model = task.build_model().to(device)
    dataset: NBody = task.datasets["test"]
    batch = FullGraphCollate()([dataset[i] for i in range(100)]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)

    @torch.no_grad()
    def forward():
        model(batch)

    def train_step():
        loss = task.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.eval()
    forward_times = _timed(forward, repeats, warmup, device)
    model.train()
    step_times = _timed(train_step, repeats, warmup, device)
    return {
        "benchmark": "nbody",
        "batch_size": 100,
        "forward_ms_median": 1000 * statistics.median(forward_times),
        "train_step_ms_median": 1000 * statistics.median(step_times),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("which", choices=["nbody"], help="what to benchmark")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = benchmark_nbody(device, args.repeats, args.warmup)
    result.update(
        {
            "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
        }
    )
    width = max(len(key) for key in result)
    for key, value in result.items():
        shown = f"{value:.2f}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    if args.output is not None:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
