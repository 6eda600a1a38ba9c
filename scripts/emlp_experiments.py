"""EMLP against a plain MLP on three synthetic tasks with exact symmetries (Finzi et al. 2021).

    python scripts/emlp_experiments.py --output docs/results/emlp_results.json --plot docs/results/emlp_test_mse.png

* ``o5``: O(5)-invariant regression, ``2T(1) → T(0)``,
  ``f(x1, x2) = sin|x1| - |x2|^3 / 2 + x1·x2 / (|x1| |x2|)``;
* ``inertia``: SO(3), five point masses ``5T(0) + 5T(1) → T(2)``,
  ``I = Σ_i m_i (|x_i|^2 1 - x_i x_iᵀ)``;
* ``lorentz``: O(1,3)-invariant "scattering" of four four-momenta ``4T(1) → T(0)``,
  ``f = (p1·p3)(p2·p4) + (p1·p4)(p2·p3) + (p1·p2)`` with the Minkowski product
  ``a·b = -a_0 b_0 + a_1 b_1 + a_2 b_2 + a_3 b_3``.

Inputs are standard normal (masses uniform in [0.5, 1.5]); targets are standardised with the
training set's mean, projected onto the invariant vectors of the output (so a tensor target
stays equivariant), and one deviation for all components. Each model trains with Adam for a fixed number of steps on
each training-set size and is tested on 1,000 fresh samples (test MSE in standardised units).
The MLP baseline has two hidden layers sized to about the EMLP's parameter count.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from segnn.emlp import O13, SO, O, T, V
from segnn.emlp.nn import EMLP


def o5_task(samples: int, generator: torch.Generator):
    x = torch.randn(samples, 10, dtype=torch.float64, generator=generator)
    x1, x2 = x[:, :5], x[:, 5:]
    n1, n2 = x1.norm(dim=1), x2.norm(dim=1)
    y = torch.sin(n1) - n2**3 / 2 + (x1 * x2).sum(1) / (n1 * n2)
    return x, y[:, None]


def inertia_task(samples: int, generator: torch.Generator):
    masses = 0.5 + torch.rand(samples, 5, dtype=torch.float64, generator=generator)
    positions = torch.randn(samples, 5, 3, dtype=torch.float64, generator=generator)
    squared = positions.pow(2).sum(-1)
    eye = torch.eye(3, dtype=torch.float64)
    inertia = (
        masses[:, :, None, None]
        * (squared[:, :, None, None] * eye - positions[:, :, :, None] * positions[:, :, None, :])
    ).sum(1)
    return torch.cat([masses, positions.reshape(samples, 15)], dim=1), inertia.reshape(samples, 9)


def lorentz_task(samples: int, generator: torch.Generator):
    p = torch.randn(samples, 4, 4, dtype=torch.float64, generator=generator)
    metric = torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64)

    def dot(i, j):
        return (p[:, i] * p[:, j] * metric).sum(1)

    y = dot(0, 2) * dot(1, 3) + dot(0, 3) * dot(1, 2) + dot(0, 1)
    return p.reshape(samples, 16), y[:, None]


TASKS = {
    "o5": (o5_task, lambda: (O(5), 2 * V(O(5)), T(0, 0, O(5)))),
    "inertia": (inertia_task, lambda: (SO(3), 5 * T(0, 0, SO(3)) + 5 * V(SO(3)), T(2, 0, SO(3)))),
    "lorentz": (lorentz_task, lambda: (O13(), 4 * V(O13()), T(0, 0, O13()))),
}


def equivariant_standardisation(y: torch.Tensor, rep_out) -> tuple[torch.Tensor, float]:
    """Mean and scale that keep the target equivariant: the training mean projected onto the
    invariant vectors of ``rep_out`` (for a scalar target, the mean itself; for the inertia
    tensor, its isotropic part) and one scale for all components. Per-component statistics
    would make a tensor target non-equivariant, which no equivariant model can fit."""
    from segnn.emlp import equivariant_basis

    invariant = equivariant_basis(rep_out).Q
    mean = invariant @ (invariant.T @ y.mean(0))
    return mean, float((y - mean).std().clamp_min(1e-12))


def mlp_like(num_in: int, num_out: int, parameters: int) -> torch.nn.Module:
    """Two hidden SiLU layers of equal width with about ``parameters`` weights."""
    width = 8
    while (num_in + 1) * width + (width + 1) * width + (width + 1) * num_out < parameters:
        width += 8
    return torch.nn.Sequential(
        torch.nn.Linear(num_in, width),
        torch.nn.SiLU(),
        torch.nn.Linear(width, width),
        torch.nn.SiLU(),
        torch.nn.Linear(width, num_out),
    )


def train(model, x, y, steps: int, lr: float, batch_size: int, generator) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        index = torch.randint(len(x), (min(batch_size, len(x)),), generator=generator)
        loss = (model(x[index]) - y[index]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()


def run(
    task: str, sizes: list[int], steps: int, seed: int, channels: int, layers: int = 3
) -> list[dict]:
    make_data, make_reps = TASKS[task]
    generator = torch.Generator().manual_seed(seed)
    x_test, y_test = make_data(1000, generator)
    results = []
    for size in sizes:
        x, y = make_data(size, generator)
        group, rep_in, rep_out = make_reps()
        mean, std = equivariant_standardisation(y, rep_out)
        y_normal, y_test_normal = (y - mean) / std, (y_test - mean) / std
        torch.manual_seed(seed)
        emlp = EMLP(rep_in, rep_out, group, channels=channels, num_layers=layers).double()
        count = sum(p.numel() for p in emlp.parameters())
        mlp = mlp_like(rep_in.size, rep_out.size, count).double()
        for name, model in (("emlp", emlp), ("mlp", mlp)):
            started = time.perf_counter()
            train(model, x, y_normal, steps, 3e-3, 64, generator)
            with torch.no_grad():
                test_mse = float((model(x_test) - y_test_normal).pow(2).mean())
            results.append(
                {
                    "task": task,
                    "model": name,
                    "emlp_blocks": layers,
                    "train_size": size,
                    "test_mse": test_mse,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "train_seconds": round(time.perf_counter() - started, 1),
                }
            )
            tqdm.write(f"{task} {name:4s} n={size:5d}: test MSE {test_mse:.4g}")
    return results


def plot(results: list[dict], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({row["task"] for row in results}, key=list(TASKS).index)
    figure, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        for model, color in (("emlp", "C0"), ("mlp", "C1")):
            rows = [row for row in results if row["task"] == task and row["model"] == model]
            axis.plot(
                [row["train_size"] for row in rows],
                [row["test_mse"] for row in rows],
                marker="o",
                color=color,
                label=model.upper(),
            )
        axis.set(
            xscale="log",
            yscale="log",
            xlabel="training samples",
            ylabel="test MSE (standardised)",
            title=task,
        )
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)


def solver_timings() -> list[dict]:
    """Seconds to solve (uncached) equivariant bases, dense and matrix-free side by side."""
    from segnn.emlp import Hom
    from segnn.emlp.solve import DENSE_LIMIT, clear_cache, equivariant_basis

    cases = [
        ("T(4) of SO(3)", T(4, 0, SO(3))),
        ("T(3) of O(1,3)", T(3, 0, O13())),
        ("T(3) -> T(3) of SO(3)", Hom(T(3, 0, SO(3)), T(3, 0, SO(3)))),
        ("T(2) -> T(2) of O(5)", Hom(T(2, 0, O(5)), T(2, 0, O(5)))),
        ("T(2) -> T(2) of O(1,3)", Hom(T(2, 0, O13()), T(2, 0, O13()))),
        ("T(3) -> T(3) of O(1,3)", Hom(T(3, 0, O13()), T(3, 0, O13()))),
        ("T(4) -> T(4) of SO(3)", Hom(T(4, 0, SO(3)), T(4, 0, SO(3)))),
        ("T(4) -> T(4) of O(3)", Hom(T(4, 0, O(3)), T(4, 0, O(3)))),
    ]
    rows = []
    for name, rep in cases:
        for method in ("dense", "iterative"):
            row = {"representation": name, "size": rep.size, "method": method}
            if method == "dense" and rep.size > DENSE_LIMIT:
                continue
            clear_cache()
            started = time.perf_counter()
            try:
                basis = equivariant_basis(rep, method=method)
            except torch.linalg.LinAlgError:
                row["result"] = "LAPACK SVD did not converge"
            else:
                row["basis_dimension"] = basis.dimension
                row["rank_gap"] = basis.largest_dropped / max(basis.smallest_kept, 1e-300)
            row["seconds"] = round(time.perf_counter() - started, 3)
            rows.append(row)
            print(
                f"{name:26s} size {rep.size:5d} {method:9s}: "
                f"dimension {row.get('basis_dimension', '-')!s:>3} in {row['seconds']:.3f} s "
                f"{row.get('result', '')}",
                flush=True,
            )
    return rows


CONFIG_KEYS = {
    "tasks": list,
    "sizes": list,
    "steps": int,
    "channels": int,
    "layers": int,
    "seed": int,
}


def read_config(path: Path) -> dict:
    """The experiment settings in a YAML file, checked: unknown keys, wrong types and unknown
    tasks are errors that name the problem."""
    import yaml

    if not path.is_file():
        raise SystemExit(f"error: config file {path} not found")
    settings = yaml.safe_load(path.read_text()) or {}
    if not isinstance(settings, dict):
        raise SystemExit(f"error: {path} must hold a mapping of settings")
    for key, value in settings.items():
        if key not in CONFIG_KEYS:
            raise SystemExit(f"error: unknown key {key!r} in {path}; known: {sorted(CONFIG_KEYS)}")
        if not isinstance(value, CONFIG_KEYS[key]) or isinstance(value, bool):
            kind = "a list" if CONFIG_KEYS[key] is list else "an integer"
            raise SystemExit(f"error: {key} in {path} must be {kind}, got {value!r}")
    unknown = set(settings.get("tasks", [])) - set(TASKS)
    if unknown:
        raise SystemExit(
            f"error: unknown task(s) {sorted(unknown)} in {path}; known: {list(TASKS)}"
        )
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[30, 100, 300, 1000])
    parser.add_argument("--steps", type=int, default=1500, help="Adam steps per training")
    parser.add_argument("--channels", type=int, default=128, help="EMLP hidden dimension")
    parser.add_argument("--layers", type=int, default=3, help="EMLP blocks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="JSON results")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of test MSE vs samples")
    parser.add_argument(
        "--solver-timings",
        action="store_true",
        help="only time the solver on large representations",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file with any of tasks, sizes, steps, channels, layers, seed "
        "(e.g. configs/emlp_synthetic.yaml); flags given on the command line win",
    )
    known, _ = parser.parse_known_args(argv)
    if known.config is not None:  # the file's settings become the defaults
        parser.set_defaults(**read_config(known.config))
    args = parser.parse_args(argv)
    if args.solver_timings:
        rows = solver_timings()
        if args.output is not None:
            args.output.write_text(json.dumps(rows, indent=2) + "\n")
        return 0
    results = []
    for task in args.tasks:
        results += run(task, args.sizes, args.steps, args.seed, args.channels, args.layers)
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot is not None:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
