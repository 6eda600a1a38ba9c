"""Speed benchmarks; prints a table and writes JSON.

    python scripts/benchmark.py nbody [--device cpu] [--threads 2] [--output bench.json]
    python scripts/benchmark.py qm9 [--repeats 5] [--output bench.json]
    python scripts/benchmark.py ethanol [--threads 1] [--output bench.json]
    python scripts/benchmark.py profile [--backend cpu_kernels] [--repeats 3]
    python scripts/benchmark.py qm9 --backend edge_frame --backend cpu_kernels_compiled
    python scripts/benchmark.py scale --atoms 3000 30000 --edge-chunk 32768 none

``nbody``: forward time of the N-body G+P model (``configs/nbody.yaml``) per batch of 100
samples, and forward+backward+Adam time per training step, for each backend.

``qm9``: the paper's QM9 model (``configs/qm9.yaml``: 128 weight-balanced features =
36x0e+36x1o+36x2e, 3 attribute degrees, 7 layers, 2 Å radius) on real QM9 molecules: training
throughput at batch 128 (molecules/s of forward+backward+Adam), inference throughput at batch
128 and 1,024, for each backend in the same run, with speed-up ratios over the reference.

``ethanol``: the energy/force model of ``configs/ethanol_forces.yaml`` on a training batch of
real frames: a training step on energies and forces (the force loss differentiates twice) and
an energy + forces evaluation, for the backends that can differentiate twice (uncompiled).

``profile``: where a QM9 training step (paper configuration, batch 128) of one backend spends
its time, by torch's profiler over ``--repeats`` steps after ``--warmup``: self time per
category of aten op (matmuls, copies and concatenations, gathers and scatters, views — whose
time is dispatch overhead —, the rest: elementwise ops and reductions) and the ops that take
longest. On CPU the profiler's own overhead inflates the many small ops a little.

``scale``: energy + forces of periodic water boxes at liquid density (0.1 atoms/Å³) with
``configs/ethanol_forces.yaml``'s model, each size and ``--edge-chunk`` in a fresh process:
neighbour list, time per atom, peak memory, MD steps per second.

Backends (same weights, same function; :mod:`segnn.backends`), timed in turns (A, B, C, A, B,
C, ...): ``e3nn`` (the reference, always timed), ``plain``, ``edge_frame``, ``cpu_kernels``,
``<backend>_compiled`` — that backend with its node updates compiled (its first step
includes the compilation, reported as ``first_train_step_s``), and ``<backend>_fullgraph`` —
the whole loss (forward; AOTAutograd compiles the backward) compiled as one graph with
``fullgraph=True`` on batches padded to fixed shapes (``scripts/padding.py``; atoms to a
multiple of 64, edges of 512), with ``mode="reduce-overhead"`` (CUDA graphs) on GPUs. ``--backend`` (repeatable)
picks which; the default is every one the task supports on the device. ``auto_backend`` names
the variant that ``train.backend: auto`` trains a long run with.

Absolute times depend on the machine: compare numbers measured in one run.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from padding import bucket, pad_batch  # scripts/padding.py

from segnn.backends import BACKENDS, EDGE_CHUNK, make_backend
from segnn.cli import add_override_option
from segnn.config import load_config
from segnn.data.nbody import FullGraphCollate, NBody
from segnn.models import use_backend
from segnn.train.tasks import make_task
from segnn.train.trainer import make_optimizer

REFERENCE = "e3nn"


def variants(device: torch.device, force_training: bool = False, radial: bool = False) -> dict:
    """``{label: (backend, compile)}`` of every backend (and its compiled forms, where it
    compiles and nothing differentiates twice: ``compile`` True for the node updates,
    ``"fullgraph"`` for the whole padded step) that supports this use, the reference first."""
    use = dict(device=device, dtype=torch.float32, force_training=force_training)
    use |= dict(forces=force_training, radial_weights=radial)
    found = {}
    for name, backend in BACKENDS.items():
        if backend.capabilities.missing(**use):
            continue
        found[name] = (name, False)
        if backend.capabilities.compile and not force_training:
            found[f"{name}_compiled"] = (name, True)
        if backend.capabilities.fullgraph and not force_training:
            found[f"{name}_fullgraph"] = (name, "fullgraph")
    return found


def auto_variant(device: torch.device, force_training: bool = False, radial: bool = False) -> str:
    """The label of what ``train.backend: auto`` trains a long run with."""
    backend = make_backend(
        "auto",
        device=device,
        force_training=force_training,
        forces=force_training,
        radial_weights=radial,
        compile=not force_training,
    )
    return f"{backend.name}_compiled" if backend.compile else backend.name


def chosen(available: dict, wanted: list[str] | None) -> dict:
    """The variants to time: ``wanted`` (plus the reference) or all of ``available``."""
    if not wanted:
        return available
    unknown = [label for label in wanted if label not in available]
    if unknown:
        raise SystemExit(
            f"--backend {', '.join(unknown)}: not available here; choose from {', '.join(available)}"
        )
    return {label: available[label] for label in [REFERENCE, *wanted] if label in available}


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


def _build(task, variant: tuple[str, bool], device: torch.device) -> torch.nn.Module:
    """The task's model on ``device`` with one ``(backend, compile)`` variant, from seed 0
    (same weights for all)."""
    backend, compile = variant
    torch.manual_seed(0)
    model = task.build_model().to(device)
    use_backend(model, backend, compile=compile is True)
    return model


def _padded(batch):
    """``batch`` padded to fixed-shape buckets (atoms: multiples of 64, edges: of 512)."""
    return pad_batch(
        batch, bucket(batch.num_nodes + 2, 64), bucket(batch.edge_index.shape[1] + 2, 512)
    )


def interleaved(
    functions: dict,
    repeats: int,
    warmup: int,
    device,
    first_calls: dict | None = None,
    rounds: dict | None = None,
) -> dict[str, float]:
    """Median seconds of each function, timed in turns (A, B, A, B, ...) so that drifts of a
    shared machine's speed hit every backend alike. ``first_calls`` receives the seconds of
    each function's first call (compilation included), ``rounds`` the seconds of every
    turn."""
    for name, function in functions.items():
        first = _timed(function, 1, 0, device)[0]
        if first_calls is not None:
            first_calls[name] = first
        for _ in range(warmup - 1):
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            times[name] += _timed(function, 1, 0, device)
    if rounds is not None:
        rounds.update(times)
    return {name: statistics.median(values) for name, values in times.items()}


def _backend_calls(
    task, batches: dict, train_size: int, lr: float, device, backends: dict
) -> tuple[dict, dict]:
    """Per variant of ``backends`` (``{label: (backend, compile)}``): a training step on
    ``batches[train_size]`` (forward, backward, Adam) and a no-grad forward of
    ``batches[size]`` (energy models: energies and forces)."""
    steps, forwards = {}, {}
    for backend, variant in backends.items():
        model = _build(task, variant, device)
        optimizer = make_optimizer(model.parameters(), lr=lr)
        if variant[1] == "fullgraph":
            mode = "reduce-overhead" if device.type == "cuda" else None
            inputs = {size: _padded(batch) for size, batch in batches.items()}
            loss_function = torch.compile(
                functools.partial(task.loss, model), fullgraph=True, dynamic=False, mode=mode
            )
            network = torch.compile(model, fullgraph=True, dynamic=False, mode=mode)
        else:
            inputs, loss_function, network = batches, functools.partial(task.loss, model), model

        def train_step(
            model=model, optimizer=optimizer, loss_function=loss_function, inputs=inputs
        ):
            model.train()
            loss = loss_function(inputs[train_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        @torch.no_grad()
        def forward(size, model=model, network=network, inputs=inputs):
            model.eval()
            network(inputs[size])

        steps[backend] = train_step
        forwards[backend] = forward
    return steps, forwards


def benchmark_nbody(
    device: torch.device, repeats: int, warmup: int, overrides: list[str] = (), backends=None
) -> dict:
    config = load_config("configs/nbody.yaml", list(overrides))
    task = make_task(config)
    dataset: NBody = task.datasets["test"]
    batches = {100: FullGraphCollate()([dataset[i] for i in range(100)]).to(device)}
    backends = chosen(variants(device), backends)
    steps, forwards = _backend_calls(task, batches, 100, config.train.lr, device, backends)
    calls = {b: functools.partial(forward, 100) for b, forward in forwards.items()}
    result = {"benchmark": "nbody", "overrides": list(overrides), "batch_size": 100}
    result["auto_backend"] = auto_variant(device)
    for backend, seconds in interleaved(calls, repeats, warmup, device).items():
        result[f"{backend}_forward_ms"] = 1000 * seconds
    for backend, seconds in interleaved(steps, repeats, warmup, device).items():
        result[f"{backend}_train_step_ms"] = 1000 * seconds
    result["parameters"] = sum(p.numel() for p in task.build_model().parameters())
    return result


def water_box(molecules: int, seed: int = 0):
    """A periodic box of ``molecules`` randomly oriented water molecules on a cubic grid at
    liquid density (0.0334 molecules/Å³, 0.1 atoms/Å³)."""
    from ase import Atoms
    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    per_side = math.ceil(molecules ** (1 / 3))
    side = (molecules / 0.0334) ** (1 / 3)
    spacing = side / per_side
    water = molecule("H2O").positions
    points = np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    chosen = points[rng.permutation(len(points))[:molecules]] * spacing
    rotations = Rotation.random(molecules, random_state=seed).as_matrix()
    positions = (rotations @ water.T).transpose(0, 2, 1) + chosen[:, None, :]
    return Atoms("OH2" * molecules, positions=positions.reshape(-1, 3), cell=[side] * 3, pbc=True)


def scale_point(
    atoms_wanted: int,
    edge_chunk: int | None,
    backend_name: str,
    overrides: list[str],
    repeats: int,
    threads: int,
    md_steps: int,
) -> dict:
    """One box size with one ``edge_chunk``, measured in a fresh process (see
    :func:`benchmark_scale`): a process's peak memory is that of this size alone."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from segnn import SEGNNCalculator
    from segnn.data.neighbours import neighbour_list
    from segnn.models import build_model

    torch.set_num_threads(threads)
    config = load_config("configs/ethanol_forces.yaml", list(overrides))
    torch.manual_seed(0)
    model = build_model(config).eval()
    backend = use_backend(model, backend_name, forces=True, edge_chunk=edge_chunk)
    atoms = water_box(atoms_wanted // 3)
    size = len(atoms)
    result = {"atoms": size, "backend": backend.name, "edge_chunk": edge_chunk}
    started = time.perf_counter()
    edges, _ = neighbour_list(
        torch.as_tensor(atoms.positions), config.data.cutoff, np.asarray(atoms.cell), atoms.pbc
    )
    result["neighbour_list_s"] = time.perf_counter() - started
    result["edges"] = int(edges.shape[1])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    for _ in range(max(repeats, 1) + 1):  # the first call warms the allocator up
        started = time.perf_counter()
        (batch,) = model.batches([atoms], batch_size=1)
        output = model(batch, forces=True)
        times.append(time.perf_counter() - started)
        del output, batch
    seconds = statistics.median(times[1:])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result |= {
        "energy_forces_s": seconds,
        "us_per_atom": 1e6 * seconds / size,
        "neighbour_list_share": result["neighbour_list_s"] / seconds,
        "peak_resident_memory_mb": peak,
        "memory_before_call_mb": before,
        "call_memory_kb_per_atom": 1024 * (peak - before) / size,
    }
    if md_steps:
        atoms.calc = SEGNNCalculator(model, dtype=torch.float32, backend=backend_name)
        dynamics = VelocityVerlet(atoms, 0.5 * units.fs)
        dynamics.run(1)  # the first step builds what later ones reuse
        started = time.perf_counter()
        dynamics.run(md_steps)
        result["md_steps_per_s"] = md_steps / (time.perf_counter() - started)
    return result


def benchmark_scale(
    device: torch.device, repeats: int, warmup: int, overrides: list[str] = (), backends=None
) -> dict:
    """Energy + forces of periodic water boxes with ``configs/ethanol_forces.yaml``'s model
    (untrained weights: speed only; float32) for each size of ``--atoms`` and each
    ``--edge-chunk``, each in a fresh process: neighbour-list time, call time (median of
    ``repeats`` after a warm-up call), time per atom, peak memory, and MD steps per second
    (velocity Verlet through :class:`segnn.SEGNNCalculator`, float32, default ``edge_chunk``)
    for sizes up to ``--md-atoms``. CPU only (peak memory is the process's resident set)."""
    import subprocess

    if device.type != "cpu":
        raise SystemExit("scale measures CPU processes; run it with --device cpu")
    backend = (backends or ["auto"])[-1]
    result = {"benchmark": "scale", "overrides": list(overrides), "backend": backend}
    for atoms_wanted in SCALE_ATOMS:
        for edge_chunk in SCALE_EDGE_CHUNKS:
            # the calculator computes in parts of the default size
            timed_md = atoms_wanted <= SCALE_MD_ATOMS[0] and edge_chunk == EDGE_CHUNK
            point = [atoms_wanted, edge_chunk, backend, list(overrides), repeats]
            point += [torch.get_num_threads(), SCALE_MD_STEPS if timed_md else 0]
            child = subprocess.run(
                [sys.executable, __file__, "scale", "--point", json.dumps(point)],
                capture_output=True,
                text=True,
            )
            if child.returncode != 0:
                raise SystemExit(f"scale point {point} failed:\n{child.stderr}")
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            result["backend"] = measured.pop("backend")
            label = f"atoms_{measured.pop('atoms')}_chunk_{edge_chunk or 'none'}"
            result |= {f"{label}_{key}": value for key, value in measured.items()}
            print(label, f"{measured['energy_forces_s']:.2f} s", flush=True)
    return result


SCALE_ATOMS = [3000, 30000]
SCALE_EDGE_CHUNKS: list[int | None] = [EDGE_CHUNK]
SCALE_MD_ATOMS = [3000]
SCALE_MD_STEPS = 5


def benchmark_ethanol(
    device: torch.device, repeats: int, warmup: int, overrides: list[str] = (), backends=None
) -> dict:
    config = load_config("configs/ethanol_forces.yaml", list(overrides))
    torch.manual_seed(0)
    task = make_task(config)
    size = config.train.batch_size
    dataset = task.datasets["train"]
    batches = {size: task.collate([dataset[i] for i in range(size)]).to(device)}
    eager = chosen(variants(device, force_training=True, radial=True), backends)
    steps, forwards = _backend_calls(task, batches, size, config.train.lr, device, eager)
    calls = {b: functools.partial(forward, size) for b, forward in forwards.items()}
    result = {
        "benchmark": "ethanol",
        "overrides": list(overrides),
        "batch_size": size,
        "atoms_per_batch": int(batches[size].num_nodes),
        "edges_per_batch": int(batches[size].edge_index.shape[1]),
        "auto_backend": auto_variant(device, force_training=True, radial=True),
    }
    for backend, seconds in interleaved(steps, repeats, warmup, device).items():
        result[f"{backend}_train_step_ms"] = 1000 * seconds
    for backend, seconds in interleaved(calls, repeats, warmup, device).items():
        result[f"{backend}_energy_and_forces_ms"] = 1000 * seconds
    for backend in list(eager)[1:]:
        for measure in ("train_step", "energy_and_forces"):
            result[f"{measure}_speedup_{backend}_over_e3nn"] = (
                result[f"e3nn_{measure}_ms"] / result[f"{backend}_{measure}_ms"]
            )
    return result


def _qm9_setup(device: torch.device, overrides: list[str], sizes=(128, 1024)):
    config = load_config(
        "configs/qm9.yaml", ["data.subset={train: 1024, val: 1, test: 1}", *overrides]
    )
    torch.manual_seed(0)
    task = make_task(config)
    dataset = task.datasets["train"]
    batches = {size: task.collate([dataset[i] for i in range(size)]).to(device) for size in sizes}
    return config, task, batches


def _qm9_backends(
    task, batches, lr: float, device, repeats: int, warmup: int, backends: dict
) -> dict:
    """Training-step and inference throughputs of each backend variant (same weights)."""
    steps, forwards = _backend_calls(task, batches, 128, lr, device, backends)
    result, first_steps, rounds = {}, {}, {}
    medians = interleaved(steps, repeats, warmup, device, first_steps, rounds)
    for backend, seconds in medians.items():
        result[f"{backend}_first_train_step_s"] = first_steps[backend]
        result[f"{backend}_train_step_ms"] = 1000 * seconds
        result[f"{backend}_train_molecules_per_s"] = 128 / seconds
    for backend in steps:
        if backend != "e3nn":  # the speed-up within each turn: drifts between turns cancel
            ratios = [r / b for r, b in zip(rounds["e3nn"], rounds[backend])]
            result[f"train_speedup_{backend}_over_e3nn_per_turn"] = [round(r, 3) for r in ratios]
    for size in (128, 1024):
        calls = {b: functools.partial(forward, size) for b, forward in forwards.items()}
        for backend, seconds in interleaved(calls, repeats, min(warmup, 1), device).items():
            result[f"{backend}_inference_molecules_per_s_batch_{size}"] = size / seconds
    return result


def benchmark_qm9(
    device: torch.device, repeats: int, warmup: int, overrides: list[str] = (), backends=None
) -> dict:
    config, task, batches = _qm9_setup(device, overrides)
    backends = chosen(variants(device), backends)
    result = {
        "benchmark": "qm9",
        "overrides": list(overrides),
        "auto_backend": auto_variant(device),
        "hidden_irreps": str(task.build_model().network.irreps_hidden),
        "atoms_per_batch_128": int(batches[128].num_nodes),
        "edges_per_batch_128": int(batches[128].edge_index.shape[1]),
    }
    result.update(_qm9_backends(task, batches, config.train.lr, device, repeats, warmup, backends))
    for backend in backends:
        if backend != "e3nn":
            result[f"train_speedup_{backend}_over_e3nn"] = (
                result[f"{backend}_train_molecules_per_s"] / result["e3nn_train_molecules_per_s"]
            )
            result[f"inference_speedup_{backend}_over_e3nn_batch_1024"] = (
                result[f"{backend}_inference_molecules_per_s_batch_1024"]
                / result["e3nn_inference_molecules_per_s_batch_1024"]
            )
    if device.type == "cuda":
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result["peak_resident_memory_mb"] = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
    return result


OP_CATEGORIES = {
    "matmul": {"mm", "bmm", "addmm", "baddbmm", "addbmm", "matmul", "linear"},
    "copy": {"cat", "copy_", "clone", "contiguous", "stack", "_to_copy", "constant_pad_nd"},
    "gather_scatter": {"index_select", "gather", "scatter_add_", "index_add_", "index_copy"},
    # metadata only: their time is dispatch overhead
    "views": set(
        "view _reshape_alias reshape as_strided split_with_sizes split transpose t permute "
        "unsqueeze squeeze expand narrow slice select unbind alias detach _unsafe_view "
        "unflatten flatten".split()
    ),
}


def profile_qm9(
    device: torch.device,
    repeats: int,
    warmup: int,
    overrides: list[str] = (),
    backends: list[str] | None = None,
) -> dict:
    """Self time per op category and the slowest ops of one backend's QM9 training step."""
    from torch.profiler import ProfilerActivity, profile

    config, task, batches = _qm9_setup(device, overrides, sizes=(128,))
    available = variants(device)
    backend = (backends or [auto_variant(device)])[-1]
    if backend not in available:
        raise SystemExit(
            f"--backend {backend}: not available here; choose from {', '.join(available)}"
        )
    steps, _ = _backend_calls(
        task, batches, 128, config.train.lr, device, {backend: available[backend]}
    )
    step = steps[backend]
    wall = _timed(step, max(repeats, 1), max(warmup, 1), device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        _timed(step, repeats, 0, device)
    events = [event for event in profiler.key_averages() if event.key.startswith("aten::")]

    def self_ms(event) -> float:  # per step
        total = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
        return total / 1000 / repeats

    categories = dict.fromkeys([*OP_CATEGORIES, "other"], 0.0)
    for event in events:
        name = event.key.removeprefix("aten::")
        category = next((c for c, ops in OP_CATEGORIES.items() if name in ops), "other")
        categories[category] += self_ms(event)
    total = sum(categories.values())
    slowest = sorted(events, key=self_ms, reverse=True)[:15]
    return {
        "benchmark": "profile",
        "backend": backend,
        "overrides": list(overrides),
        "train_step_ms": 1000 * statistics.median(wall),
        "profiled_aten_self_ms_per_step": total,
        **{f"{category}_ms_per_step": ms for category, ms in categories.items()},
        **{f"{category}_share": ms / total for category, ms in categories.items()},
        "slowest_ops_ms_per_step": {event.key: round(self_ms(event), 2) for event in slowest},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "which",
        choices=["nbody", "qm9", "ethanol", "profile", "scale"],
        help="what to benchmark",
    )
    parser.add_argument(
        "--atoms",
        type=int,
        nargs="+",
        default=None,
        help="for scale: box sizes in atoms (default 3000 30000)",
    )
    parser.add_argument(
        "--edge-chunk",
        nargs="+",
        default=None,
        metavar="EDGES",
        help=f"for scale: edges per part of the messages, or none (default {EDGE_CHUNK})",
    )
    parser.add_argument(
        "--md-atoms",
        type=int,
        default=None,
        help="for scale: time MD steps for boxes up to this size (default 3000; 0: none)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    parser.add_argument(
        "--backend",
        dest="backends",
        action="append",
        default=None,
        metavar="NAME",
        help="a backend to time besides e3nn, e.g. edge_frame or cpu_kernels_compiled "
        "(repeatable; default: all; profile: the last one, default what auto trains with)",
    )
    add_override_option(parser, "config override, e.g. --set model.hidden_allocation=dimension")
    parser.add_argument("--point", help=argparse.SUPPRESS)  # scale: one measurement, as JSON
    args = parser.parse_args(argv)
    if args.point is not None:  # a child process of benchmark_scale
        print(json.dumps(scale_point(*json.loads(args.point))))
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a torch device (cpu, cuda, cuda:1, ...)")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this machine or torch build has no CUDA device")
    benchmarks = {
        "nbody": benchmark_nbody,
        "qm9": benchmark_qm9,
        "ethanol": benchmark_ethanol,
        "profile": profile_qm9,
        "scale": benchmark_scale,
    }
    if args.atoms:
        SCALE_ATOMS[:] = args.atoms
    if args.edge_chunk:
        SCALE_EDGE_CHUNKS[:] = [None if text == "none" else int(text) for text in args.edge_chunk]
    if args.md_atoms is not None:
        SCALE_MD_ATOMS[:] = [args.md_atoms]
    result = benchmarks[args.which](
        device, args.repeats, args.warmup, args.overrides, args.backends
    )
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
        if isinstance(value, dict):
            print(key)
            for name, number in value.items():
                print(f"  {name:<{width - 2}}  {number}")
            continue
        shown = f"{value:.2f}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    if args.output is not None:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
