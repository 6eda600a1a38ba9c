"""Data-parallel training (segnn.train.distributed): two CPU processes with ``gloo`` make the
same updates as one process on the same global batch (float64: to 1e-10), rank 0 alone writes
the run, and a rank that dies stops the job with an error."""

import multiprocessing
import os
import socket
import time
from pathlib import Path

import pytest
import torch

import segnn
from segnn.checkpoint import load_checkpoint
from segnn.config import load_config
from segnn.train import train_from_config
from segnn.train.distributed import DistributedError

TINY = {
    "qm9": (
        "configs/qm9_quick.yaml",
        ["model.hidden_features=8", "model.num_layers=1", "train.batch_size=8"],
    ),
    "forces": (
        "configs/ethanol_forces.yaml",
        ["model.hidden_features=8", "model.lmax_hidden=1", "model.num_layers=1"]
        + ["train.batch_size=8"],
    ),
    "stress": (  # periodic water boxes: energies, forces and stress
        "configs/water_pbc.yaml",
        ["model.hidden_features=8", "model.lmax_hidden=1", "model.num_layers=1"]
        + ["train.batch_size=8", "train.max_minutes=null"],
    ),
}


def config_for(name: str, runs: Path, run_name: str, epochs: int = 1):
    path, overrides = TINY[name]
    overrides = overrides + [
        "data.subset={train: 16, val: 6, test: 4}",
        f"train.epochs={epochs}",
        "train.compile=false",
        "train.dtype=float64",
        f"train.runs_dir={runs}",
        f"train.run_name={run_name}",
    ]
    return load_config(path, overrides)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rank_main(
    rank: int, world: int, port: int, name: str, runs: str, die: bool, epochs: int, resume: bool
) -> None:
    """One rank of a job, as ``torchrun`` would start it."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        SEGNN_DISTRIBUTED_TIMEOUT_S="30",
    )
    torch.set_num_threads(1)
    if die and rank == 1:  # this rank dies after its first training step
        from segnn.train import trainer

        original = trainer.learning_rate_factor
        calls = []

        def dying(*arguments):
            calls.append(1)
            if len(calls) > 1:
                os._exit(3)
            return original(*arguments)

        trainer.learning_rate_factor = dying
    try:
        if resume:
            train_from_config(resume_dir=Path(runs) / "ddp")
        else:  # with two epochs: the first only, then stop (resumable)
            stop = 1 if epochs > 1 else None
            train_from_config(config_for(name, Path(runs), "ddp", epochs), stop_after_epochs=stop)
    except DistributedError as error:
        assert "lost the other processes" in str(error)
        os._exit(4)


def launch(
    name: str,
    runs: Path,
    die: bool = False,
    timeout: float = 240,
    epochs: int = 1,
    resume: bool = False,
) -> list[int]:
    """Two ranks in fresh processes; their exit codes (None: still running at ``timeout``)."""
    context = multiprocessing.get_context("spawn")
    port = free_port()
    processes = [
        context.Process(
            target=rank_main, args=(rank, 2, port, name, str(runs), die, epochs, resume)
        )
        for rank in range(2)
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(deadline - time.monotonic(), 1))
    codes = [process.exitcode for process in processes]
    for process in processes:
        if process.is_alive():
            process.kill()
    return codes


def trained_weights(run: Path) -> dict:
    return load_checkpoint(run / "last.pt")["model_state"]


@pytest.mark.parametrize("name", ["qm9", "forces", "stress"])
def test_two_ranks_make_the_updates_of_one_process(name, tmp_path):
    torch.set_num_threads(1)
    train_from_config(config_for(name, tmp_path / "one", "single"))
    assert launch(name, tmp_path / "two") == [0, 0]
    single, shared = (
        trained_weights(tmp_path / "one" / "single"),
        trained_weights(tmp_path / "two" / "ddp"),
    )
    assert single.keys() == shared.keys()
    weights = {k: v for k, v in single.items() if v.is_floating_point() and v.numel()}
    # relative to the largest weight: weights whose gradient is zero analytically (a bias
    # before the instance norm) move by rounding noise only, differently in each run
    scale = max(float(value.abs().max()) for value in weights.values())
    for key, value in weights.items():
        assert float((shared[key] - value).abs().max()) <= 1e-10 * scale, key
    state = load_checkpoint(tmp_path / "two" / "ddp" / "last.pt")["training_state"]
    assert state["global_step"] == 2 and state["finished"]
    # rank 0 alone wrote the run: one run directory, no second copy from rank 1
    assert [path.name for path in (tmp_path / "two").iterdir()] == ["ddp"]
    written = {path.name for path in (tmp_path / "two" / "ddp").iterdir()}
    assert {"config.yaml", "metrics.csv", "best.pt", "last.pt", "results.json"} <= written
    assert not any(key.startswith("module.") for key in shared)
    model = segnn.load_model(tmp_path / "two" / "ddp" / "best.pt")
    assert type(model).__name__ == ("PropertyModel" if name == "qm9" else "EnergyModel")


def test_a_distributed_run_resumes_exactly(tmp_path):
    torch.set_num_threads(1)
    train_from_config(config_for("qm9", tmp_path / "one", "single", epochs=2))
    assert launch("qm9", tmp_path / "two", epochs=2) == [0, 0]
    assert not load_checkpoint(tmp_path / "two" / "ddp" / "last.pt")["training_state"]["finished"]
    assert launch("qm9", tmp_path / "two", resume=True) == [0, 0]
    single, shared = (
        trained_weights(tmp_path / "one" / "single"),
        trained_weights(tmp_path / "two" / "ddp"),
    )
    scale = max(
        float(v.abs().max()) for v in single.values() if v.is_floating_point() and v.numel()
    )
    for key, value in single.items():
        if value.is_floating_point() and value.numel():
            assert float((shared[key] - value).abs().max()) <= 1e-10 * scale, key


def test_a_rank_that_dies_stops_the_job_with_an_error(tmp_path):
    started = time.monotonic()
    codes = launch("qm9", tmp_path, die=True, timeout=150)
    assert codes[1] == 3
    assert codes[0] == 4  # the survivor failed with a DistributedError instead of waiting
    assert time.monotonic() - started < 150
