"""scripts/compare_mace.py: MACE gets exactly segnn's frames and split, and its run is read back
right. (The comparison itself trains for many minutes and is not part of the tests.)"""

import time
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from segnn.config import load_config
from segnn.train.tasks import EnergyForceTask

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def compare(load_script):
    return load_script("compare_mace")


def test_mace_files_hold_the_frames_of_segnns_split(compare, tmp_path):
    config = load_config(ROOT / "configs" / "ethanol_forces.yaml", ["data.split=[0.5, 0.2, 0.3]"])
    frames, indices = compare.split_frames(config)
    task = EnergyForceTask(config)
    for split in ("train", "val", "test"):
        path = tmp_path / f"{split}.xyz"
        compare.write_reference([frames[i] for i in indices[split]], path, config)
        written = read(path, ":")
        segnn_items = task.datasets[split].items
        assert len(written) == len(segnn_items) == len(indices[split])
        for frame, item in zip(written, segnn_items):
            assert frame.calc is None  # only the REF_ keys, nothing MACE could read instead
            assert frame.info["REF_energy"] == pytest.approx(float(item.energy), abs=1e-9)
            assert np.allclose(frame.arrays["REF_forces"], item.forces.numpy(), atol=1e-9)
            assert np.allclose(frame.positions, item.pos.numpy(), atol=1e-9)


def test_mace_command_is_the_small_model_with_extra_arguments_last(compare, tmp_path):
    args = compare.parse_arguments(
        [
            "--config",
            "configs/ethanol_forces.yaml",
            "--output",
            str(tmp_path / "out.json"),
            "--mace-args",
            "--default_dtype=float32",
        ]
    )
    files = {split: tmp_path / f"{split}.xyz" for split in ("train", "val", "test")}
    command = compare.mace_command(args, files, tmp_path / "run")
    assert Path(command[0]).name == "mace_run_train"
    for flag in ("--num_channels=64", "--max_L=1", "--correlation=3", "--num_interactions=2"):
        assert flag in command
    assert "--ema" in command and "--amsgrad" in command
    assert command[-1] == "--default_dtype=float32"  # argparse: the last one wins


def test_reads_maces_checkpoint_names_and_epochs(compare, tmp_path):
    assert compare.checkpoint_epoch(Path("mace_run-0_epoch-12.pt")) == 12
    log = tmp_path / "train.log"
    log.write_text(
        "INFO: Started training, reporting errors on validation set\n"
        "INFO: Initial: head: Default, loss=8.1\n"
        "INFO: Epoch 0: head: Default, loss=4.2\n"
        "INFO: Epoch 1: head: Default, loss=3.1\n"
    )
    assert compare.last_logged_epoch(log) == 2


def test_refuses_a_config_without_forces_and_a_missing_mace(compare, tmp_path, capsys):
    output = str(tmp_path / "out.json")
    assert compare.main(["--config", "configs/qm9_quick.yaml", "--output", output]) == 2
    assert "force field" in capsys.readouterr().err
    missing = ["--mace-python", str(tmp_path / "nowhere" / "python")]
    arguments = ["--config", "configs/ethanol_forces.yaml", "--output", output, *missing]
    assert compare.main(arguments) == 2
    assert "make mace-venv" in capsys.readouterr().err


FAKE_MACE = """#!/usr/bin/env python3
import sys, time
import time
from pathlib import Path
work = Path([a for a in sys.argv if a.startswith("--work_dir=")][0].split("=", 1)[1])
if "--restart_latest" in sys.argv:
    (work / "mace.model").write_text("model")
    sys.exit(0)
(work / "checkpoints").mkdir(parents=True)
(work / "checkpoints" / "mace_run-0_epoch-3.pt").write_text("weights")
print("INFO: Started training, reporting errors on validation set")
print("INFO: Epoch 3: head: Default, loss=1.0")
time.sleep(600)  # one long, silent epoch: only a timer stops it
"""


def test_mace_is_stopped_on_time_even_between_log_lines(compare, tmp_path):
    fake = tmp_path / "bin" / "mace_run_train"
    fake.parent.mkdir()
    fake.write_text(FAKE_MACE)
    fake.chmod(0o755)
    args = compare.parse_arguments(
        ["--config", "configs/ethanol_forces.yaml", "--output", str(tmp_path / "out.json")]
    )
    args.mace_python, args.minutes = fake.parent / "python", 0.05
    files = {split: tmp_path / f"{split}.xyz" for split in ("train", "val", "test")}
    started = time.monotonic()
    trained = compare.train_mace(args, files, tmp_path / "run")
    assert time.monotonic() - started < 30
    assert trained["best_epoch"] == 3 and trained["epochs"] == 4
    assert trained["train_seconds"] == pytest.approx(3.0, abs=1.0)  # until it stopped
    assert Path(trained["model"]).read_text() == "model"
