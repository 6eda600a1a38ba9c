"""End to end on energies and forces: training on the committed ethanol frames, checkpoints,
resume, the calculator from a checkpoint, NVE dynamics, data errors."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.io import read, write
from ase.md.verlet import VelocityVerlet

import segnn
from segnn.checkpoint import load_checkpoint
from segnn.cli import main
from segnn.config import ConfigError, load_config
from segnn.data import AtomsDataset
from segnn.testing import finite_difference_forces
from segnn.train import train_from_config

ROOT = Path(__file__).parents[1]
CONFIG = ROOT / "configs" / "ethanol_forces.yaml"
ETHANOL = ROOT / "data" / "ethanol" / "ethanol_gfn2xtb_500K.extxyz"
TINY = [
    f"data.path={ETHANOL}",
    "model.hidden_features=16",
    "model.lmax_hidden=1",
    "model.lmax_attr=1",
    "model.num_layers=2",
    "data.subset={train: 96, val: 16, test: 16}",
    "train.epochs=3",
    "train.batch_size=16",
    "train.lr=5e-3",
    "train.warmup_epochs=0",
]


@pytest.fixture(scope="module")
def force_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    overrides = [item for pair in zip(["--set"] * len(TINY), TINY) for item in pair]
    code = main(
        ["train", "--config", str(CONFIG), *overrides]
        + ["--set", f"train.runs_dir={runs}", "--set", "train.run_name=ethanol"]
    )
    assert code == 0
    return runs / "ethanol"


def test_training_writes_metrics_plots_and_learns(force_run):
    for name in ["best.pt", "last.pt", "learning_curves.png", "parity_energy_test.png"]:
        assert (force_run / name).is_file(), name
    assert (force_run / "parity_forces_test.png").is_file()
    results = json.loads((force_run / "results.json").read_text())
    assert results["num_test"] == 16 and results["epochs"] == 3
    assert results["forces_unit"] == "meV/Å" and results["unit"] == "meV"
    # learnt something: forces better than predicting zero
    assert results["test_forces_mae"] < results["zero_forces_test_mae"]
    with open(force_run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) >= {"val_energy_mae", "val_forces_mae"}
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_trained_forces_equal_finite_differences(force_run):
    calculator = segnn.SEGNNCalculator(force_run / "best.pt", device="cpu")
    atoms = read(ETHANOL, index=500)
    forces = calculator.get_forces(atoms)
    reference = finite_difference_forces(calculator.get_potential_energy, atoms)
    assert np.abs(forces - reference).max() <= 1e-6 * np.abs(reference).max()


def test_nve_dynamics_conserve_energy(force_run):
    atoms = read(ETHANOL, index=0)
    atoms.calc = segnn.SEGNNCalculator(force_run / "best.pt", device="cpu")
    rng = np.random.default_rng(0)
    masses = atoms.get_masses()[:, None]
    atoms.set_momenta(rng.standard_normal((len(atoms), 3)) * np.sqrt(masses * units.kB * 300))
    total = [atoms.get_total_energy()]
    dynamics = VelocityVerlet(atoms, 0.5 * units.fs)
    for _ in range(100):
        dynamics.run(1)
        total.append(atoms.get_total_energy())
    kinetic_scale = 1.5 * len(atoms) * units.kB * 300  # ~0.35 eV
    assert np.isfinite(total).all()
    assert np.abs(np.array(total) - total[0]).max() < 0.01 * kinetic_scale


def test_resume_reproduces_uninterrupted_force_run(tmp_path):
    def config(name):
        return load_config(
            CONFIG,
            TINY + ["train.epochs=2", f"train.runs_dir={tmp_path}", f"train.run_name={name}"],
        )

    train_from_config(config("straight"))
    assert train_from_config(config("interrupted"), stop_after_epochs=1) is None
    train_from_config(resume_dir=tmp_path / "interrupted")
    expected = load_checkpoint(tmp_path / "straight" / "last.pt")["model_state"]
    actual = load_checkpoint(tmp_path / "interrupted" / "last.pt")["model_state"]
    assert all(torch.equal(expected[key], actual[key]) for key in expected)


def test_cli_predict_and_evaluate_energy_checkpoint(force_run, tmp_path, capsys):
    structure = tmp_path / "frames.xyz"
    write(structure, read(ETHANOL, index=":2"))
    assert main(["predict", "--checkpoint", str(force_run / "best.pt"), str(structure)]) == 0
    output = capsys.readouterr().out
    assert "frames.xyz[1]" in output and "energy =" in output and " eV " in output
    assert main(["evaluate", "--checkpoint", str(force_run / "best.pt"), "--split", "test"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = json.loads((force_run / "results.json").read_text())
    assert report["forces_mae"] == pytest.approx(results["test_forces_mae"], rel=1e-6)
    assert report["forces_mae_unit"] == "meV/Å"


def test_energy_checkpoint_loads_as_energy_model(force_run):
    model = segnn.load_model(force_run / "best.pt")
    assert isinstance(model, segnn.EnergyModel)
    (prediction,) = model.predict(read(ETHANOL, index=3))
    assert prediction.unit == "eV" and -320 < prediction.value < -300


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.path=null"], "needs data.path"),
        (["model.radial=squared_distance"], "model.radial"),
        (["data.split=[0.9, 0.2, 0.1]"], "data.split"),
    ],
)
def test_bad_force_configs_are_named(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        config = load_config(CONFIG, [f"train.runs_dir={tmp_path}", *overrides])
        train_from_config(config)


def test_dataset_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.extxyz"):
        AtomsDataset.from_file(tmp_path / "missing.extxyz")
    frames = read(ETHANOL, index=":2")
    with pytest.raises(ValueError, match="'REF_energy'"):
        AtomsDataset(frames, energy_key="REF_energy")
    custom = Atoms("CO", positions=[[0, 0, 0], [1.13, 0, 0]])
    custom.info["REF_energy"] = -1.5
    custom.arrays["REF_forces"] = np.zeros((2, 3))
    path = tmp_path / "custom.extxyz"
    write(path, [custom])
    dataset = AtomsDataset.from_file(path, "REF_energy", "REF_forces")
    assert float(dataset[0].energy) == -1.5 and dataset[0].forces.shape == (2, 3)
    broken = custom.copy()
    broken.positions[1, 0] = np.nan
    with pytest.raises(ValueError, match="frame 0.*non-finite"):
        AtomsDataset([broken], "REF_energy", None)


def test_file_order_split_holds_out_the_last_frames():
    from segnn.data.split import split_structures

    in_order = split_structures(10, [0.6, 0.2, 0.2], seed=3, shuffle=False)
    assert [in_order[split].tolist() for split in ("train", "val", "test")] == [
        [0, 1, 2, 3, 4, 5],
        [6, 7],
        [8, 9],
    ]
    shuffled = split_structures(10, [0.6, 0.2, 0.2], seed=3)
    assert sorted(torch.cat(list(shuffled.values())).tolist()) == list(range(10))
    assert shuffled["test"].tolist() != [8, 9]
