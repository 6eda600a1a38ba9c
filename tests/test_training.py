"""End to end: CLI training, resume, checkpoints, evaluate, predict and the Python API."""

import json

import pytest
import torch
from ase.build import molecule
from ase.io import write

import segnn
from segnn.checkpoint import CheckpointError, load_checkpoint
from segnn.cli import main
from segnn.config import load_config
from segnn.testing import random_orthogonal
from segnn.train import train_from_config

TINY = [
    "model.hidden_features=16",
    "model.lmax_hidden=1",
    "model.lmax_attr=1",
    "model.num_layers=1",
    "data.subset={train: 48, val: 16, test: 16}",
    "train.epochs=2",
    "train.batch_size=16",
    "train.lr=1e-3",
]


def tiny_config(tmp_path, *extra):
    return load_config("configs/qm9_quick.yaml", TINY + [f"train.runs_dir={tmp_path}", *extra])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    overrides = [item for pair in zip(["--set"] * len(TINY), TINY) for item in pair]
    code = main(
        [
            "train",
            "--config",
            "configs/qm9_quick.yaml",
            *overrides,
            "--set",
            f"train.runs_dir={runs}",
            "--set",
            "train.run_name=cli",
        ]
    )
    assert code == 0
    return runs / "cli"


def test_cli_training_writes_everything(trained_run):
    for name in [
        "config.yaml",
        "metrics.csv",
        "best.pt",
        "last.pt",
        "results.json",
        "learning_curves.png",
        "parity_test.png",
    ]:
        assert (trained_run / name).is_file(), name
    results = json.loads((trained_run / "results.json").read_text())
    assert results["target"] == "u0" and results["unit"] == "meV"
    assert results["num_test"] == 16 and results["epochs"] == 2
    assert len((trained_run / "metrics.csv").read_text().strip().splitlines()) == 3


@pytest.mark.parametrize("ema", [[], ["train.ema_decay=0.9"]], ids=["plain", "ema"])
def test_resume_reproduces_uninterrupted_run(tmp_path, ema):
    straight = tiny_config(tmp_path, "train.run_name=straight", *ema)
    train_from_config(straight)
    interrupted = tiny_config(tmp_path, "train.run_name=interrupted", *ema)
    assert train_from_config(interrupted, stop_after_epochs=1) is None
    assert load_checkpoint(tmp_path / "interrupted" / "last.pt")["training_state"]["epoch"] == 1
    resumed = train_from_config(resume_dir=tmp_path / "interrupted")
    expected = load_checkpoint(tmp_path / "straight" / "last.pt")
    actual = load_checkpoint(tmp_path / "interrupted" / "last.pt")
    for weights in ["model_state", "trained_state"] if ema else ["model_state"]:
        assert all(torch.equal(expected[weights][k], actual[weights][k]) for k in expected[weights])
    if ema:  # model_state holds the average, which differs from the trained weights
        assert not all(
            torch.equal(actual["model_state"][k], actual["trained_state"][k])
            for k in actual["model_state"]
        )
    assert resumed["test_mae"] == pytest.approx(
        json.loads((tmp_path / "straight" / "results.json").read_text())["test_mae"]
    )


def test_checkpoint_round_trip_and_predict(trained_run):
    payload = load_checkpoint(trained_run / "best.pt")
    assert (
        payload["species"] == ["H", "C", "N", "O", "F"]
        and payload["segnn_version"] == segnn.__version__
    )
    model = segnn.load_model(trained_run / "best.pt")
    (prediction,) = model.predict(molecule("CH3CH2OH"))
    assert prediction.unit == "eV" and prediction.name == "u0"
    again = segnn.load_model(trained_run / "best.pt").predict(
        [molecule("CH3CH2OH"), molecule("CH4")]
    )
    # a molecule's prediction does not depend on its batch-mates (up to float32 rounding: the
    # matmul kernels a CPU picks depend on the batch's size)
    assert again[0].value == pytest.approx(prediction.value, rel=1e-6) and len(again) == 2


def test_predictions_invariant_to_rotation_reflection_translation_permutation(trained_run):
    model = segnn.load_model(trained_run / "best.pt")
    atoms = molecule("CH3COOH")
    reference = model.predict(atoms)[0].value
    generator = torch.Generator().manual_seed(0)
    for reflection in (False, True):
        moved = atoms.copy()
        rotation = random_orthogonal(reflection, generator=generator).numpy()
        moved.positions = moved.positions @ rotation.T + [1.5, -2.0, 0.7]
        moved = moved[torch.randperm(len(moved), generator=generator).numpy()]
        assert model.predict(moved)[0].value == pytest.approx(reference, rel=1e-4, abs=1e-4)


def test_unknown_species_named(trained_run):
    model = segnn.load_model(trained_run / "best.pt")
    with pytest.raises(ValueError, match="element\\(s\\) Si not known"):
        model.predict(molecule("SiH4"))


def test_corrupt_and_foreign_checkpoints(tmp_path, trained_run):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((trained_run / "best.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or foreign"):
        segnn.load_model(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a segnn checkpoint"):
        segnn.load_model(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        segnn.load_model(tmp_path / "missing.pt")


def test_cli_evaluate_and_predict(trained_run, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.pt"), "--split", "test"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = json.loads((trained_run / "results.json").read_text())
    assert report["mae"] == pytest.approx(results["test_mae"], rel=1e-5)
    structure = tmp_path / "ethanol.xyz"
    write(structure, molecule("CH3CH2OH"))
    assert main(["predict", "--checkpoint", str(trained_run / "best.pt"), str(structure)]) == 0
    output = capsys.readouterr().out
    assert "ethanol.xyz" in output and "u0 =" in output and " eV " in output
    assert (
        main(["predict", "--checkpoint", str(trained_run / "best.pt"), str(tmp_path / "none.xyz")])
        == 2
    )
    assert "not found" in capsys.readouterr().err


def test_cli_rejects_bad_config_keys(tmp_path, capsys):
    assert main(["train", "--config", "configs/qm9_quick.yaml", "--set", "model.layers=3"]) == 2
    assert "unknown config key 'model.layers'" in capsys.readouterr().err
