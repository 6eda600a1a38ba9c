"""Training on stress: reading it (Voigt, 9 or 3×3; errors named), the virial targets, the
loss of a model on its own predictions, frames without stress beside frames with one."""

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

import segnn
from segnn.config import load_config
from segnn.data import AtomsDataset, RadiusGraphCollate
from segnn.data.loss_weights import with_loss_weights
from segnn.testing import example_energy_model
from segnn.train.tasks import EnergyForceTask

CUTOFF = 3.0
ROOT = Path(__file__).parents[1]


def water_like_box(seed: int) -> Atoms:
    """Four HOH triples at random in a slightly triclinic periodic box."""
    rng = np.random.default_rng(seed)
    cell = np.diag([4.0, 4.3, 4.6]) + 0.2 * rng.random((3, 3))
    return Atoms("OHH" * 4, scaled_positions=rng.random((12, 3)), cell=cell, pbc=True)


def labelled(atoms: Atoms, model, stress: bool = True) -> Atoms:
    """``atoms`` with the energy, forces (and stress) of ``model`` as single-point results."""
    atoms = atoms.copy()
    atoms.calc = segnn.SEGNNCalculator(model)
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if stress:
        results["stress"] = atoms.get_stress(voigt=True)
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


@pytest.fixture(scope="module")
def model():
    return example_energy_model(cutoff=CUTOFF)


@pytest.fixture(scope="module")
def frames(model):
    boxes = [labelled(water_like_box(seed), model) for seed in range(3)]
    return boxes + [labelled(molecule("CH3CH2OH"), model, stress=False)]


def test_stress_reads_as_voigt_nine_or_three_by_three(frames):
    voigt = frames[0].calc.results["stress"]
    full = np.empty((3, 3))
    full[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]] = voigt
    full[[0, 1, 2, 2, 2, 1], [0, 1, 2, 1, 0, 0]] = voigt
    for given in (voigt, full, full.ravel()):
        frame = frames[0].copy()
        frame.info["REF_stress"] = given
        frame.info["energy"] = 1.0
        item = AtomsDataset([frame], forces_key=None, stress_key="REF_stress")[0]
        assert item.stress.shape == (1, 3, 3) and bool(item.has_stress)
        assert np.allclose(item.stress[0].numpy(), full, rtol=0, atol=1e-15)


def test_a_virial_reads_as_minus_stress_times_volume(frames):
    frame, stress = frames[1].copy(), frames[1].calc.results["stress"]
    frame.info.update(energy=1.0, REF_virial=-stress * frame.get_volume())
    from_virial = AtomsDataset([frame], forces_key=None, virial_key="REF_virial")[0]
    frame.info["REF_stress"] = stress
    from_stress = AtomsDataset([frame], forces_key=None, stress_key="REF_stress")[0]
    assert torch.allclose(from_virial.stress, from_stress.stress, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="not both"):
        AtomsDataset([frame], stress_key="REF_stress", virial_key="REF_virial")
    from segnn.config import ConfigError

    with pytest.raises(ConfigError, match="data.stress_key or data.virial_key"):
        load_config(ROOT / "configs" / "water_pbc.yaml", ["data.virial_key=virial"])


def test_frames_without_stress_train_on_energy_and_forces(frames):
    dataset = AtomsDataset(frames, stress_key="stress")
    assert [bool(item.has_stress) for item in dataset] == [True, True, True, False]
    assert float(dataset[3].stress.abs().sum()) == 0.0


@pytest.mark.parametrize(
    "stress, message",
    [
        (np.zeros(5), r"frame 0: the stress under 'S' has shape \(5,\)"),
        (np.full(6, np.nan), "frame 0 has a non-finite stress"),
    ],
)
def test_bad_stresses_are_named(stress, message):
    frame = water_like_box(0)
    frame.info.update(energy=1.0, S=stress)
    with pytest.raises(ValueError, match=message):
        AtomsDataset([frame], forces_key=None, stress_key="S")


def test_stress_on_a_molecule_or_nowhere_is_named():
    ethanol = molecule("CH3CH2OH")
    ethanol.info.update(energy=1.0, S=np.zeros(6))
    with pytest.raises(ValueError, match="not periodic in all three directions"):
        AtomsDataset([ethanol], forces_key=None, stress_key="S")
    frame = water_like_box(0)
    frame.info["energy"] = 1.0
    with pytest.raises(ValueError, match="no frame of structures has a stress under the key 'S'"):
        AtomsDataset([frame], forces_key=None, stress_key="S")


def test_virial_targets_match_the_models_own_virial(model, frames):
    """``normalized_targets`` of frames labelled by the model equal the model's own normalised
    energies, forces and virials: the conventions (sign, volume, scale) agree (to the rounding
    of the items' float32 positions)."""
    dataset = AtomsDataset(frames, stress_key="stress")
    batch = RadiusGraphCollate(CUTOFF)([item.clone() for item in dataset])
    batch.pos = batch.pos.double()
    batch.cell = batch.cell.double()
    energy, forces, virial = model.normalized(batch, virial=True)
    target_energy, target_forces, target_virial = model.normalized_targets(batch)
    assert torch.allclose(energy, target_energy, rtol=1e-5, atol=1e-6)
    assert torch.allclose(forces, target_forces, rtol=1e-5, atol=1e-5)
    stressed = batch.has_stress
    assert torch.allclose(virial[stressed], target_virial[stressed], rtol=1e-5, atol=1e-5)
    assert float(target_virial[stressed].abs().max()) > 1e-3  # not trivially zero


def stress_task(tmp_path, frames, stress_weight=1.0):
    path = tmp_path / "boxes.extxyz"
    write(path, frames)
    config = load_config(
        {
            "model": {
                "species": ["H", "C", "O"],
                "hidden_features": 8,
                "lmax_hidden": 1,
                "lmax_attr": 1,
                "num_layers": 1,
                "task": "energy",
                "radial": "bessel",
                "norm": "none",
            },
            "data": {
                "dataset": "xyz",
                "path": str(path),
                "cutoff": CUTOFF,
                "stress_key": "stress",
                "split": [0.5, 0.25, 0.25],
            },
            "train": {"stress_weight": stress_weight, "loss": "mse"},
        }
    )
    return EnergyForceTask(config)


def test_stress_enters_the_loss_and_the_metrics(tmp_path, frames):
    task = stress_task(tmp_path, frames * 2)
    assert task.metrics["stress_mae"] == "meV/Å³"
    model = task.build_model().double()
    items = [item.clone() for item in task.datasets["train"]]
    batch = RadiusGraphCollate(CUTOFF)(items).apply(
        lambda tensor: tensor.double() if tensor.is_floating_point() else tensor
    )
    with_stress = task.loss(model, batch)
    task.config.train.stress_weight = 0.0
    without = task.loss(model, batch)
    energy, forces, virial = model.normalized(batch, virial=True)
    _, _, target = model.normalized_targets(batch)
    atoms = torch.bincount(batch.batch).double()[:, None, None]
    weight = batch.has_stress.double()[:, None, None]
    expected = ((virial - target) / atoms).pow(2).mul(weight).sum() / (9 * weight.sum())
    assert float((with_stress - without).detach()) == pytest.approx(float(expected), rel=1e-9)
    assert float(expected.detach()) > 0
    predicted = task.predict(model, [batch])
    assert predicted["stress"].shape == (int(batch.has_stress.sum()), 3, 3)
    assert torch.allclose(predicted["stress_ref"], batch.stress[batch.has_stress])
    assert set(task.scores(predicted)) == {"energy_mae", "forces_mae", "stress_mae"}


def test_a_batch_without_any_stress_adds_nothing(tmp_path, frames):
    task = stress_task(tmp_path, frames * 2)
    model = task.build_model().double()
    molecules = [item.clone() for item in task.datasets["train"] if not item.has_stress]
    boxes = [item.clone() for item in task.datasets["train"] if item.has_stress]
    batch = RadiusGraphCollate(CUTOFF)(molecules + [boxes[0]])
    batch.has_stress[:] = False
    batch = with_loss_weights(batch)  # the weights are declared when a batch is made
    assert batch.stress_loss_weight.abs().sum() == 0
    loss = task.loss(model, batch.apply(lambda t: t.double() if t.is_floating_point() else t))
    assert torch.isfinite(loss)
    task.config.train.stress_weight = 0.0
    without = task.loss(model, batch.apply(lambda t: t.double() if t.is_floating_point() else t))
    assert float(loss.detach()) == float(without.detach())


WATER = ROOT / "data" / "water" / "water32_gfn1xtb_330K.extxyz"
ETHANOL = ROOT / "data" / "ethanol" / "ethanol_gfn2xtb_500K.extxyz"


@pytest.fixture(scope="module")
def water_run(tmp_path_factory):
    """One epoch of a tiny model on 12 water boxes (with stress) and 6 ethanol molecules
    (without), through the CLI."""
    from segnn.cli import main

    folder = tmp_path_factory.mktemp("water")
    frames = read(WATER, index=":12") + read(ETHANOL, index=":6")
    write(folder / "mixed.extxyz", frames)
    tiny = [
        f"data.path={folder / 'mixed.extxyz'}",
        "model.species=[H, C, O]",
        "model.hidden_features=8",
        "model.num_layers=1",
        "data.split=[0.5, 0.25, 0.25]",
        "data.split_order=random",
        "train.epochs=1",
        "train.max_minutes=null",
        f"train.runs_dir={folder}",
        "train.run_name=run",
    ]
    overrides = [item for pair in zip(["--set"] * len(tiny), tiny) for item in pair]
    assert main(["train", "--config", str(ROOT / "configs" / "water_pbc.yaml"), *overrides]) == 0
    return folder / "run"


def test_training_on_periodic_frames_with_stress_beside_molecules(water_run):
    import csv
    import json

    with open(water_run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert "val_stress_mae" in rows[-1] and float(rows[-1]["val_stress_mae"]) > 0
    results = json.loads((water_run / "results.json").read_text())
    assert results["test_stress_mae"] > 0 and results["num_test_stress"] >= 1
    assert (water_run / "parity_stress_test.png").is_file()
    model = segnn.load_model(water_run / "best.pt")
    box = read(WATER, index=0)
    box.calc = segnn.SEGNNCalculator(model)
    assert box.get_stress().shape == (6,) and np.isfinite(box.get_stress()).all()


def test_npt_dynamics_report_the_density(water_run, tmp_path):
    import json
    import subprocess
    import sys

    summary = tmp_path / "npt.json"
    command = [sys.executable, str(ROOT / "scripts" / "run_md.py")]
    command += ["--checkpoint", str(water_run / "best.pt"), "--structure", str(WATER)]
    command += ["--ensemble", "npt", "--steps", "4", "--timestep", "1.0"]
    command += ["--hydrogen-mass", "2.014", "--temperature", "330", "--json", str(summary)]
    subprocess.run(command, check=True, capture_output=True)
    result = json.loads(summary.read_text())
    assert result["atoms"] == 96 and result["finite"]
    assert 0.5 < result["mean_density_g_per_cm3"] < 1.5
