"""segnn and MACE trained side by side: same frames, same split, same wall-clock budget.

For each training-set size, one after the other (never two at once: on a small machine two
jobs wreck each other's timings):

1. segnn trains from ``--config`` with ``train.max_minutes`` = ``--minutes`` and epochs
   enough that the clock ends the run (the schedule follows the clock) on the first N frames
   of the config's training split;
2. MACE (mace-torch's ``mace_run_train``, in its own environment ``--mace-python``, never a
   dependency of segnn) trains on the same N frames, validates on the same frames, and is
   stopped ``--minutes`` after it logs "Started training"; its best checkpoint (by its own
   validation loss, EMA weights) becomes its model. MACE's side is the small model of its
   documentation with its own defaults (``--mace-args`` adds to or overrides them);
3. both are scored on the same test frames through their ASE calculators in float64.

Energy MAE per structure (meV), force MAE per component (meV/Å), seconds per calculator call,
epochs and parameters go to ``--output`` (JSON); several sizes also give a figure of the test
force MAE against the training-set size. Example (about 2 × 15 minutes)::

    make mace-venv
    python scripts/compare_mace.py --config configs/ethanol_forces.yaml --minutes 15 \\
        --output docs/results/compare_mace_ethanol.json

Both codes use the threads of ``--threads`` (``OMP_NUM_THREADS`` and torch's intra-op pool).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

from segnn.cli import add_override_option
from segnn.data.atoms import frame_value

EPOCHS = 100000
"""Epochs of both codes' runs: more than fit in any budget, so the clock ends every run."""
MACE_SMALL = {
    "model": "MACE",
    "num_channels": "64",
    "max_L": "1",
    "correlation": "3",
    "num_interactions": "2",
    "r_max": "5.0",
    "E0s": "average",
    "batch_size": "10",
    "valid_batch_size": "10",
    "lr": "0.01",
    "energy_weight": "1",
    "forces_weight": "100",
    "ema_decay": "0.99",
    "max_num_epochs": str(EPOCHS),
    "seed": "0",
    "device": "cpu",
    "default_dtype": "float64",
}
"""The small MACE of the issue and of MACE's documentation (64 channels, L = 1, correlation 3,
two interactions, 5 Å), with MACE's defaults written out: weights energy 1 / forces 100, lr 0.01,
batch 10, float64 training; ``--ema --amsgrad`` are added as flags."""
MACE_STARTED = "Started training"
"""What MACE logs when its training loop begins: its clock starts there."""


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, required=True, help="segnn force-field config")
    add_override_option(parser, "override a segnn config value, as segnn train --set")
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget of each run")
    parser.add_argument(
        "--train-sizes",
        type=int,
        nargs="+",
        help="training frames (the first N of the split; default: the whole training split)",
    )
    parser.add_argument("--codes", nargs="+", choices=["segnn", "mace"], default=["segnn", "mace"])
    parser.add_argument(
        "--mace-python",
        type=Path,
        default=Path(".venv-mace/bin/python"),
        help="python of the environment with mace-torch (make mace-venv)",
    )
    parser.add_argument(
        "--mace-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="more mace_run_train arguments (last on the command line), e.g. --mace-args "
        "--default_dtype float32",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads of each code")
    parser.add_argument(
        "--work-dir", type=Path, default=Path("runs/compare_mace"), help="runs and data files"
    )
    parser.add_argument("--output", type=Path, required=True, help="results JSON to write")
    return parser.parse_args(argv)


def split_frames(config) -> tuple[list[Atoms], dict[str, np.ndarray]]:
    """The config's frames and its train/val/test indices, exactly as ``segnn train`` splits."""
    from segnn.data.split import data_split

    frames = read(config.data.path, ":")
    indices = data_split(len(frames), config.data)
    return frames, {split: chosen.numpy() for split, chosen in indices.items()}


def write_reference(frames: list[Atoms], path: Path, config) -> None:
    """Frames with their reference energy and forces under MACE's ``REF_`` keys (no
    calculator attached, so nothing else is written)."""
    data = config.data
    plain = []
    for frame in frames:
        copy = Atoms(frame.symbols, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
        copy.info["REF_energy"] = reference_energy(frame, data.energy_key)
        copy.arrays["REF_forces"] = reference_forces(frame, data.forces_key)
        plain.append(copy)
    write(path, plain, format="extxyz")


def reference_energy(frame: Atoms, key: str) -> float:
    return float(frame_value(frame, key, per_atom=False))


def reference_forces(frame: Atoms, key: str) -> np.ndarray:
    return np.asarray(frame_value(frame, key, per_atom=True), dtype=float)


def environment(threads: int) -> dict[str, str]:
    """Both codes' environment: ``threads`` threads, output unbuffered (MACE's log lines arrive
    as written), progress bars redrawn every 30 s."""
    return os.environ | {
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TQDM_MININTERVAL": "30",
    }


def train_segnn(args: argparse.Namespace, size: int, run_dir: Path) -> dict:
    """``segnn train`` of the config on ``size`` training frames for ``--minutes``."""
    command = [
        sys.executable,
        "-m",
        "segnn",
        "train",
        "--config",
        str(args.config),
        "--set",
        f"train.epochs={EPOCHS}",
        *(item for override in args.overrides for item in ("--set", override)),
        "--set",
        f"train.max_minutes={args.minutes}",
        "--set",
        f"data.subset.train={size}",
        "--set",
        f"train.runs_dir={run_dir.parent}",
        "--set",
        f"train.run_name={run_dir.name}",
    ]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, env=environment(args.threads))
    results = json.loads((run_dir / "results.json").read_text())
    return {
        "epochs": results["epochs"],
        "steps": results["steps"],
        "train_seconds": results["train_seconds"],
        "parameters": results["num_parameters"],
        "checkpoint": str(run_dir / "best.pt"),
    }


def mace_command(args: argparse.Namespace, files: dict[str, Path], run_dir: Path) -> list[str]:
    options = MACE_SMALL | {
        "name": "mace",
        "work_dir": str(run_dir),
        "train_file": str(files["train"]),
        "valid_file": str(files["val"]),
        "test_file": str(files["test"]),
        "energy_key": "REF_energy",
        "forces_key": "REF_forces",
    }
    command = [str(args.mace_python.parent / "mace_run_train"), "--ema", "--amsgrad"]
    command += [f"--{key}={value}" for key, value in options.items()]
    return command + list(args.mace_args)


def train_mace(args: argparse.Namespace, files: dict[str, Path], run_dir: Path) -> dict:
    """``mace_run_train`` for ``--minutes`` after it starts training, stopped by SIGTERM, then
    restarted from its best checkpoint with no epochs left to write its ``.model``."""
    command = mace_command(args, files, run_dir)
    print("$", " ".join(command), flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "train.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment(args.threads),
        )
        started, stop = None, None
        for line in process.stdout:  # MACE logs once an epoch: a timer stops it on time
            log.write(line)
            if started is None and MACE_STARTED in line:
                started = time.monotonic()
                # SIGTERM: a shell's background jobs start with SIGINT ignored
                stop = threading.Timer(60 * args.minutes, process.send_signal, [signal.SIGTERM])
                stop.start()
                print(f"MACE started training; stopping it in {args.minutes} min", flush=True)
        process.wait()
        if stop is not None:
            stop.cancel()
    if started is None:
        raise RuntimeError(f"MACE did not start training; see {log_path}")
    trained_seconds = time.monotonic() - started  # until it stopped
    checkpoints = sorted((run_dir / "checkpoints").glob("*.pt"), key=checkpoint_epoch)
    if not checkpoints:
        raise RuntimeError(f"MACE wrote no checkpoint in {args.minutes} min; see {log_path}")
    best_epoch = checkpoint_epoch(checkpoints[-1])
    epochs = last_logged_epoch(log_path)
    # with no epochs left after its best checkpoint, MACE loads it, evaluates and saves it
    finish = command + ["--restart_latest", f"--max_num_epochs={best_epoch}"]
    with open(run_dir / "finish.log", "w") as log:
        subprocess.run(
            finish, check=True, stdout=log, stderr=subprocess.STDOUT, env=environment(args.threads)
        )
    model = run_dir / "mace.model"
    if not model.exists():
        raise RuntimeError(f"MACE wrote no model; see {run_dir / 'finish.log'}")
    return {
        "epochs": epochs,
        "best_epoch": best_epoch,
        "train_seconds": round(trained_seconds, 1),
        "model": str(model),
    }


def checkpoint_epoch(path: Path) -> int:
    """The epoch in a MACE checkpoint's name, ``..._epoch-12.pt``."""
    return int(path.stem.rsplit("epoch-", 1)[1].split("_")[0])


def last_logged_epoch(log_path: Path) -> int | None:
    """The last epoch MACE reported on its validation set (``Epoch N: ...``)."""
    epochs = [
        int(line.split("Epoch ", 1)[1].split(":", 1)[0])
        for line in log_path.read_text().splitlines()
        if "Epoch " in line and line.split("Epoch ", 1)[1].split(":", 1)[0].isdigit()
    ]
    return max(epochs) + 1 if epochs else None


def predict_segnn(checkpoint: str, test: Path) -> dict[str, np.ndarray]:
    """Energies, forces and seconds per call of ``SEGNNCalculator`` (float64) on ``test``."""
    import torch

    from segnn import SEGNNCalculator

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    calculator = SEGNNCalculator(checkpoint, device="cpu")
    energies, forces, seconds = [], [], []
    for frame in read(test, ":"):
        frame.calc = calculator
        started = time.perf_counter()
        energies.append(frame.get_potential_energy())
        forces.append(frame.get_forces())
        seconds.append(time.perf_counter() - started)
    return {
        "energy": np.array(energies),
        "forces": np.concatenate(forces),
        "seconds_per_frame": float(np.mean(seconds[1:] or seconds)),
    }


def predict_mace(args: argparse.Namespace, model: str, test: Path, output: Path) -> dict:
    command = [
        str(args.mace_python),
        str(Path(__file__).with_name("mace_predict.py")),
        "--model",
        model,
        "--input",
        str(test),
        "--output",
        str(output),
    ]
    subprocess.run(command, check=True, env=environment(args.threads))
    with np.load(output) as predicted:
        return {key: predicted[key] for key in predicted.files}


def scores(predicted: dict, frames: list[Atoms], config) -> dict[str, float]:
    """Energy MAE per structure (meV) and force MAE per component (meV/Å)."""
    energies = np.array([reference_energy(frame, config.data.energy_key) for frame in frames])
    forces = np.concatenate([reference_forces(frame, config.data.forces_key) for frame in frames])
    return {
        "energy_mae_meV": 1000 * float(np.abs(predicted["energy"] - energies).mean()),
        "forces_mae_meV_per_A": 1000 * float(np.abs(predicted["forces"] - forces).mean()),
        "seconds_per_frame": float(predicted["seconds_per_frame"]),
    }


def efficiency_plot(rows: list[dict], output: Path, title: str) -> None:
    """Test force MAE against training frames, one line per code."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 4))
    for code in sorted({row["code"] for row in rows}):
        chosen = sorted(
            (row for row in rows if row["code"] == code), key=lambda r: r["train_frames"]
        )
        axis.plot(
            [row["train_frames"] for row in chosen],
            [row["forces_mae_meV_per_A"] for row in chosen],
            marker="o",
            label=code,
        )
    axis.set(
        xscale="log",
        yscale="log",
        xlabel="training frames",
        ylabel="test force MAE (meV/Å)",
        title=title,
    )
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    from segnn.config import load_config

    config = load_config(args.config, args.overrides)
    if config.data.dataset != "xyz" or not config.data.forces_key:
        print("--config must train a force field (data.dataset: xyz with forces)", file=sys.stderr)
        return 2
    if "mace" in args.codes and not args.mace_python.exists():
        print(f"no MACE environment at {args.mace_python}: make mace-venv", file=sys.stderr)
        return 2
    frames, indices = split_frames(config)
    sizes = args.train_sizes or [len(indices["train"])]
    if max(sizes) > len(indices["train"]):
        print(f"--train-sizes exceed the {len(indices['train'])} training frames", file=sys.stderr)
        return 2
    work = args.work_dir / f"{args.config.stem}_{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True)
    files = {split: work / f"{split}.xyz" for split in ("val", "test")}
    for split, path in files.items():
        write_reference([frames[i] for i in indices[split]], path, config)
    test_frames = [frames[i] for i in indices["test"]]
    rows = []
    for size in sizes:
        files["train"] = work / f"train_{size}.xyz"
        write_reference([frames[i] for i in indices["train"][:size]], files["train"], config)
        for code in args.codes:
            run_dir = work / f"{code}_{size}"
            if code == "segnn":
                trained = train_segnn(args, size, run_dir)
                predicted = predict_segnn(trained["checkpoint"], files["test"])
            else:
                trained = train_mace(args, files, run_dir)
                predicted = predict_mace(
                    args, trained["model"], files["test"], run_dir / "test.npz"
                )
            row = {"code": code, "train_frames": size, **scores(predicted, test_frames, config)}
            rows.append(row | trained)
            print(
                f"{code}, {size} frames, {args.minutes} min: energy MAE "
                f"{row['energy_mae_meV']:.1f} meV, force MAE {row['forces_mae_meV_per_A']:.1f} meV/Å",
                flush=True,
            )
    result = {
        "config": str(args.config),
        "overrides": args.overrides,
        "data": config.data.path,
        "minutes": args.minutes,
        "threads": args.threads,
        "val_frames": len(indices["val"]),
        "test_frames": len(indices["test"]),
        "mace_arguments": {**MACE_SMALL, "ema": True, "amsgrad": True, "extra": args.mace_args},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "runs": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    if len(sizes) > 1:
        efficiency_plot(rows, args.output.with_suffix(".png"), Path(config.data.path).stem)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
