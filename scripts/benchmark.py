"""Speed benchmarks; prints a table and writes JSON.

    python scripts/benchmark.py nbody [--device cpu] [--threads 2] [--output bench.json]
    python scripts/benchmark.py qm9 [--repeats 5] [--output bench.json]

``nbody``: forward time of the N-body G+P model (``configs/nbody.yaml``) per batch of 100
samples, and forward+backward+Adam time per training step, median over repeats after warm-up.

``qm9``: the paper's QM9 model (``configs/qm9.yaml``: 128 features, l ≤ 2 hidden, l ≤ 3
attributes, 7 layers, 2 Å radius) on real QM9 molecules: training throughput at batch 128
(molecules/s of forward+backward+Adam), inference throughput at batch 128 and 1,024, for each
tensor-product backend in the same run: ``segnn`` (our own path) and ``e3nn`` (the reference:
one e3nn ``FullyConnectedTensorProduct`` per product, same weights), with speed-up ratios.

Absolute times depend on the machine: compare numbers measured in one run.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from segnn.config import load_config
from segnn.data.nbody import FullGraphCollate, NBody
from segnn.o3.reference import use_reference_tensor_products
from segnn.train.tasks import make_task
from segnn.train.trainer import make_optimizer

BACKENDS = ("e3nn", "segnn")  # the reference path first


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
    optimizer = make_optimizer(model.parameters(), lr=config.train.lr)

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


def _interleaved(functions: dict, repeats: int, warmup: int, device) -> dict[str, float]:
    """Median seconds of each function, timed in turns (A, B, A, B, ...) so that drifts of a
    shared machine's speed hit every backend alike."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            times[name] += _timed(function, 1, 0, device)
    return {name: statistics.median(values) for name, values in times.items()}


def _qm9_backends(task, batches, lr: float, device, repeats: int, warmup: int) -> dict:
    """Training-step and inference throughputs of each tensor-product backend (same weights)."""
    steps, forwards = {}, {}
    for backend in BACKENDS:
        torch.manual_seed(0)
        model = task.build_model().to(device)
        use_reference_tensor_products(model, enabled=backend == "e3nn")
        optimizer = make_optimizer(model.parameters(), lr=lr)

        def train_step(model=model, optimizer=optimizer):
            model.train()
            loss = task.loss(model, batches[128])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        @torch.no_grad()
        def forward(size, model=model):
            model.eval()
            model(batches[size])

        steps[backend] = train_step
        forwards[backend] = forward
    result = {}
    for backend, seconds in _interleaved(steps, repeats, warmup, device).items():
        result[f"{backend}_train_step_ms"] = 1000 * seconds
        result[f"{backend}_train_molecules_per_s"] = 128 / seconds
    for size in (128, 1024):
        calls = {b: functools.partial(forward, size) for b, forward in forwards.items()}
        for backend, seconds in _interleaved(calls, repeats, min(warmup, 1), device).items():
            result[f"{backend}_inference_molecules_per_s_batch_{size}"] = size / seconds
    return result


def benchmark_qm9(device: torch.device, repeats: int, warmup: int) -> dict:
    config = load_config("configs/qm9.yaml", ["data.subset={train: 1024, val: 1, test: 1}"])
    torch.manual_seed(0)
    task = make_task(config)
    dataset = task.datasets["train"]
    batches = {
        size: task.collate([dataset[i] for i in range(size)]).to(device) for size in (128, 1024)
    }
    result = {
        "benchmark": "qm9",
        "atoms_per_batch_128": int(batches[128].num_nodes),
        "edges_per_batch_128": int(batches[128].edge_index.shape[1]),
    }
    result.update(_qm9_backends(task, batches, config.train.lr, device, repeats, warmup))
    result["train_speedup_segnn_over_e3nn"] = (
        result["segnn_train_molecules_per_s"] / result["e3nn_train_molecules_per_s"]
    )
    result["inference_speedup_segnn_over_e3nn_batch_1024"] = (
        result["segnn_inference_molecules_per_s_batch_1024"]
        / result["e3nn_inference_molecules_per_s_batch_1024"]
    )
    if device.type == "cuda":
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result["peak_resident_memory_mb"] = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("which", choices=["nbody", "qm9"], help="what to benchmark")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    benchmarks = {"nbody": benchmark_nbody, "qm9": benchmark_qm9}
    result = benchmarks[args.which](device, args.repeats, args.warmup)
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
