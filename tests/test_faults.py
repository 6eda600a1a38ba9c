"""Fault injection: killed kernel builds, divergence, full disks, signals, killed writes and
corrupt checkpoints never hang a run, lose work silently or end in a stack trace."""

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import segnn.extensions
import segnn.files
from segnn.checkpoint import load_checkpoint, save_checkpoint
from segnn.cli import main
from segnn.config import load_config
from segnn.extensions import ExtensionBuildError, load_extension
from segnn.train import train_from_config

KERNELS = Path(__file__).parents[1] / "segnn" / "backends" / "cpu_kernels" / "frame_kernels.cpp"
TINY = [
    "model.hidden_features=16",
    "model.lmax_attr=1",
    "model.num_layers=1",
    "data.subset={train: 48, val: 16, test: 16}",
    "train.batch_size=16",
    "train.max_minutes=null",
]
LOAD_KERNELS = (
    "from segnn.backends.cpu_kernels.kernels import available; print('kernels', available())"
)


def train_arguments(runs: Path, name: str, *overrides: str) -> list[str]:
    arguments = ["train", "--config", "configs/qm9_quick.yaml"]
    for item in [*TINY, f"train.runs_dir={runs}", f"train.run_name={name}", *overrides]:
        arguments += ["--set", item]
    return arguments


def python(code: str, cache: Path, **environment: str) -> subprocess.Popen:
    """``python -c code`` with the extension cache ``cache``, in a session of its own (killing
    the session kills its compiler too)."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=os.environ | {"SEGNN_EXTENSION_DIR": str(cache), **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


# ------------------------------------------------------------------------------ kernel builds
def test_killed_kernel_build_blocks_nothing_and_ranks_build_once(tmp_path):
    first = python(LOAD_KERNELS, tmp_path)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("segnn_frame_kernels-build-*")):
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.1)
    time.sleep(1.0)  # one second into the build
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not list(tmp_path.glob("*.so"))
    # two processes at once (as torchrun ranks): one builds, the other waits and loads it
    ranks = [python(LOAD_KERNELS, tmp_path) for _ in range(2)]
    outputs = [rank.communicate(timeout=120) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], outputs
    assert all("kernels True" in out for out, _ in outputs), outputs
    assert sum("waiting for process" in err for _, err in outputs) == 1, outputs
    assert len(list(tmp_path.glob("*.so"))) == 1
    assert not list(tmp_path.glob("segnn_frame_kernels-build-*"))


def test_build_held_by_a_live_process_gives_up_naming_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGNN_EXTENSION_DIR", str(tmp_path))
    monkeypatch.setenv("SEGNN_EXTENSION_TIMEOUT", "0.5")
    monkeypatch.setattr(segnn.extensions, "_loaded", {})  # as in a fresh process
    lock = tmp_path / "segnn_frame_kernels.lock"
    with open(lock, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("4242\n")
        holder.flush()
        started = time.monotonic()
        with pytest.raises(ExtensionBuildError, match="process 4242") as raised:
            load_extension("segnn_frame_kernels", KERNELS, ["-O3"])
    assert str(lock) in str(raised.value)
    assert time.monotonic() - started < 10


def test_unavailable_kernels_warn_and_name_the_fallback(tmp_path):
    lock = tmp_path / "segnn_frame_kernels.lock"
    with open(lock, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        code = (
            "import warnings; from segnn.backends.cpu_kernels.kernels import available\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always'); print(available()); print(caught[0].message)"
        )
        process = python(code, tmp_path, SEGNN_EXTENSION_TIMEOUT="1")
        out, err = process.communicate(timeout=120)
    assert out.startswith("False"), (out, err)
    assert str(lock) in out and "edge_frame" in out


# -------------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("lr", ["1e6", "50"])
def test_diverging_run_stops_with_a_clear_error(tmp_path, capsys, lr):
    code = main(train_arguments(tmp_path, "run", f"train.lr={lr}", "train.epochs=6"))
    error = capsys.readouterr().err.strip()
    assert code == 5
    last = error.splitlines()[-1]  # before it: progress bars
    assert "Traceback" not in error and last.startswith("segnn train: error: training diverged")
    assert "at step" in last and "train.lr" in last and "best.pt" in last
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert all(torch.isfinite(value).all() for value in best["model_state"].values())
    assert not (tmp_path / "run" / "results.json").exists()


def test_nonfinite_steps_never_update_the_weights():
    from segnn.train.divergence import NONFINITE_LIMIT, DivergenceGuard, TrainingDiverged

    guard = DivergenceGuard({}, factor=1e4)
    assert guard.accepts(1.0, 1.0, step=1)
    for step in range(2, NONFINITE_LIMIT + 1):
        assert not guard.accepts(float("nan"), 1.0, step)
    with pytest.raises(TrainingDiverged, match=r"step 4: the loss was nan .* at step 1"):
        guard.accepts(float("nan"), 1.0, step=4)
    guard = DivergenceGuard({}, factor=1e4)
    assert not guard.accepts(0.5, float("inf"), step=1)
    assert guard.accepts(0.5, 2.0, step=2)  # a finite step resets the count
    assert guard.state["nonfinite_steps"] == 0
    for step in range(3, 50):
        guard.accepts(0.5 * 0.8**step, 1.0, step)
    with pytest.raises(TrainingDiverged, match="rose over 10000 times"):
        for step in range(50, 100):
            guard.accepts(1e6, 1.0, step)


# ------------------------------------------------------------------------------ disk and I/O
def test_full_disk_names_the_file_and_keeps_earlier_checkpoints(tmp_path, monkeypatch, capsys):
    fsync, calls = os.fsync, []

    def full_after_a_few(descriptor):  # config.yaml and the initial best.pt fit
        calls.append(descriptor)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(descriptor)

    monkeypatch.setattr(segnn.files.os, "fsync", full_after_a_few)
    code = main(train_arguments(tmp_path, "run", "train.epochs=2"))
    error = capsys.readouterr().err.strip()
    assert code == 4
    assert "Traceback" not in error and "no space left on device" in error.splitlines()[-1]
    assert f"could not write {tmp_path / 'run' / 'best.pt'}" in error
    assert "the previous best.pt is intact" in error
    assert load_checkpoint(tmp_path / "run" / "best.pt")["training_state"]["global_step"] == 0
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_really_full_filesystem(tmp_path, capsys):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"no tmpfs can be mounted here: {mounted.stderr.decode().strip()}")
    try:
        code = main(train_arguments(small, "run", "train.epochs=2", "model.hidden_features=64"))
        error = capsys.readouterr().err.strip()
        assert code == 4 and "no space left on device" in error.splitlines()[-1], error
        assert "Traceback" not in error
        for name in ("best.pt", "last.pt"):
            if (small / "run" / name).exists():
                load_checkpoint(small / "run" / name)
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_unwritable_runs_directory_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(train_arguments(blocker / "runs", "run", "train.epochs=1"))
    error = capsys.readouterr().err.strip()
    assert code == 4 and f"could not write {blocker / 'runs'}" in error, error
    assert "nothing was trained" in error


# ------------------------------------------------------------------ signals and killed writes
def test_sigterm_saves_last_and_the_run_resumes(tmp_path):
    arguments = train_arguments(tmp_path, "run", "train.epochs=20")
    process = subprocess.Popen(
        [sys.executable, "-m", "segnn", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    metrics = tmp_path / "run" / "metrics.csv"
    deadline = time.monotonic() + 120
    while not metrics.exists() or len(metrics.read_text().splitlines()) < 2:  # epoch 1 logged
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, error = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, error
    assert "stopped by SIGTERM at step" in error and "--resume" in error
    state = load_checkpoint(tmp_path / "run" / "last.pt")["training_state"]
    assert 3 <= state["global_step"] < 60 and not state["finished"]
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["epochs"] == 20 and results["steps"] == 60


def test_kill_during_checkpoint_write_keeps_the_old_one(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"config": {}, "model_state": {}, "species": ["H"], "round": -1})
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, torch; from segnn.checkpoint import save_checkpoint\n"
            "big = {'w': torch.randn(4_000_000)}\n"
            "for i in range(1000):\n"
            "    save_checkpoint(sys.argv[1], {'config': {}, 'model_state': big, "
            "'species': ['H'], 'round': i})\n",
            str(path),
        ]
    )
    time.sleep(4.0)
    writer.kill()
    writer.wait()
    assert load_checkpoint(path)["species"] == ["H"]


def test_corrupt_last_resumes_from_best(tmp_path, capsys):
    config = load_config(
        "configs/qm9_quick.yaml",
        [*TINY, "train.epochs=3", f"train.runs_dir={tmp_path}", "train.run_name=run"],
    )
    assert train_from_config(config, stop_after_epochs=1) is None
    run = tmp_path / "run"
    load_checkpoint(run / "best.pt")
    (run / "last.pt").write_bytes(b"half a checkpoint")
    assert main(["train", "--resume", str(run)]) == 0
    error = capsys.readouterr().err
    assert "last.pt is not a readable segnn checkpoint" in error, error
    assert "resuming from best.pt" in error
    assert json.loads((run / "results.json").read_text())["epochs"] == 3
