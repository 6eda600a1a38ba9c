"""The charged N-body system: simulator physics and symmetry, the G+P model, a short training."""

import csv
import json

import numpy as np
import pytest
import torch

from segnn.api import DisplacementModel
from segnn.cli import main
from segnn.config import ConfigError, load_config
from segnn.data.nbody import (
    INPUT_STEP,
    TARGET_STEP,
    TIME_STEP,
    FullGraphCollate,
    NBody,
    coulomb_forces,
    generate_dataset,
    initial_state,
    node_inputs,
    potential_energy,
    simulate,
)
from segnn.models import SEGNN
from segnn.testing import E3Transform, assert_model_equivariant, compare, random_orthogonal

SMALL = {"train": 64, "val": 32, "test": 32}


@pytest.fixture(scope="module")
def nbody_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nbody")
    generate_dataset(root, seed=0, sizes=SMALL)
    return root


def test_simulator_conserves_energy_without_close_encounters():
    positions, velocities, charges = initial_state(200, np.random.default_rng(1))
    x, v = simulate(positions, velocities, charges, 4000, record_every=100)
    energy = 0.5 * (v**2).sum((-1, -2)) + np.stack([potential_energy(xt, charges) for xt in x])
    distance = np.linalg.norm(x[:, :, :, None] - x[:, :, None], axis=-1)
    distance[:, :, range(5), range(5)] = np.inf
    smooth = distance.min((0, 2, 3)) > 0.3
    assert smooth.sum() > 40
    # 3% of the initial kinetic energy (5 particles at speed 0.5: 0.625)
    assert np.abs(energy - energy[0]).max(0)[smooth].max() < 0.02


def test_simulator_records_the_states_of_the_egnn_protocol():
    """EGNN's generator: one velocity kick, then per step a drift, a recording every 100 steps
    (its frame k = step 100 (k + 1)) and a kick; frames 30 and 40 are the input and target."""
    positions, velocities, charges = initial_state(4, np.random.default_rng(3))
    x, v = positions.copy(), velocities.copy()
    v += TIME_STEP * coulomb_forces(x, charges)
    frames = []
    for step in range(1, 4200):
        x += TIME_STEP * v
        if step % 100 == 0:
            frames.append((x.copy(), v.copy()))
        v += TIME_STEP * coulomb_forces(x, charges)
    x_input, v_input = simulate(positions, velocities, charges, INPUT_STEP)
    x_target, _ = simulate(x_input, v_input, charges, TARGET_STEP - INPUT_STEP)
    np.testing.assert_allclose(x_input, frames[30][0], atol=1e-9)
    np.testing.assert_allclose(v_input, frames[30][1], atol=1e-9)
    np.testing.assert_allclose(x_target, frames[40][0], atol=1e-9)


def test_simulator_is_equivariant():
    positions, velocities, charges = initial_state(50, np.random.default_rng(2))
    generator = torch.Generator().manual_seed(0)
    for reflection in (False, True):
        rotation = random_orthogonal(reflection, generator=generator).numpy()
        shift = np.array([0.5, -1.0, 2.0])
        x, v = simulate(positions, velocities, charges, 1000)
        x_moved, v_moved = simulate(
            positions @ rotation.T + shift, velocities @ rotation.T, charges, 1000
        )
        assert np.abs(x_moved - (x @ rotation.T + shift)).max() < 1e-8
        assert np.abs(v_moved - v @ rotation.T).max() < 1e-8


def test_dataset_items_and_graph(nbody_root):
    dataset = NBody("val", nbody_root)
    assert len(dataset) == 32
    item = dataset[0]
    assert item.x.shape == (5, 5) and item.y.shape == (5, 3) and item.charge.shape == (5, 1)
    assert torch.allclose(item.x[:, 2:], item.vel) and set(item.charge.flatten().tolist()) <= {
        -1.0,
        1.0,
    }
    batch = FullGraphCollate()([dataset[0], dataset[1]])
    assert batch.edge_index.shape == (2, 40)


def test_centered_positions_are_an_input_vector(nbody_root):
    dataset = NBody("val", nbody_root, centered_positions=True)
    item = dataset[0]
    assert item.x.shape == (5, 8)
    assert torch.allclose(item.x[:, 5:], item.pos - item.pos.mean(dim=0))
    assert torch.allclose(item.x[:, 5:].sum(dim=0), torch.zeros(3), atol=1e-5)
    batch = FullGraphCollate()([dataset[0], dataset[1]])
    assert torch.allclose(
        node_inputs(batch.pos, batch.vel, batch.charge, batch.batch, centered_positions=True),
        batch.x,
        atol=1e-6,
    )
    with pytest.raises(ConfigError, match="2x0e \\+ 1x1o"):
        from segnn.train.tasks import make_task

        make_task(load_config("configs/nbody.yaml", ["data.centered_positions=false"]))


def network(velocity_attribute=True, centered_positions=True, seed=0):
    torch.manual_seed(seed)
    overrides = [f"model.velocity_attribute={velocity_attribute}"]
    if not centered_positions:
        overrides += ["model.input_irreps=2x0e + 1x1o", "data.centered_positions=false"]
    return SEGNN(load_config("configs/nbody.yaml", overrides).model).double()


def as_float64(tensor):
    return tensor.double() if tensor.is_floating_point() else tensor


def with_features(data, centered_positions=True):
    """Node inputs rebuilt from the (transformed) positions, velocities and charges."""
    data = data.clone()
    data.x = node_inputs(data.pos, data.vel, data.charge, data.batch, centered_positions)
    return data


@pytest.mark.parametrize(
    "velocity_attribute, centered_positions", [(True, True), (False, True), (True, False)]
)
def test_displacement_is_an_equivariant_vector(nbody_root, velocity_attribute, centered_positions):
    model = network(velocity_attribute, centered_positions)
    dataset = NBody("test", nbody_root)
    batch = FullGraphCollate()([dataset[i] for i in range(4)]).apply(as_float64)
    assert_model_equivariant(
        lambda data: model(with_features(data, centered_positions)),
        batch,
        "1x1o",
        per_node=True,
        vector_keys=["vel"],
    )


@pytest.mark.parametrize("centered_positions", [False, True])
def test_predicted_positions_follow_translations(nbody_root, centered_positions):
    model = DisplacementModel(network(centered_positions=centered_positions))
    dataset = NBody("test", nbody_root)
    batch = FullGraphCollate()([dataset[i] for i in range(3)]).apply(as_float64)
    batch = with_features(batch, centered_positions)
    shifted = batch.clone()
    shifted.pos = batch.pos + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    shifted = with_features(shifted, centered_positions)
    compare(
        model(batch) + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64),
        model(shifted),
        "translation",
    )
    transform = E3Transform.random(
        batch, reflection=True, generator=torch.Generator().manual_seed(3)
    )
    moved = with_features(transform.apply(batch, vector_keys=["vel"]), centered_positions)
    expected = (model(batch) @ transform.rotation.T + transform.translation)[transform.permutation]
    compare(expected, model(moved), "rotoreflection + translation of predicted positions")


def test_short_training_decreases_the_loss(nbody_root, tmp_path):
    overrides = [
        f"data.root={nbody_root}",
        "model.hidden_features=16",
        "model.num_layers=2",
        "train.epochs=4",
        "train.batch_size=16",
        "train.lr=3e-3",
        f"train.runs_dir={tmp_path}",
        "train.run_name=nbody",
    ]
    arguments = ["train", "--config", "configs/nbody.yaml"]
    for override in overrides:
        arguments += ["--set", override]
    assert main(arguments) == 0
    run = tmp_path / "nbody"
    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["val_mse"]) < float(rows[0]["val_mse"])
    results = json.loads((run / "results.json").read_text())
    assert results["num_test"] == 32 and results["test_mse"] > 0
    assert (run / "parity_test.png").is_file() and (run / "learning_curves.png").is_file()


def test_nbody_config_errors_are_named():
    with pytest.raises(ConfigError, match="input_irreps"):
        from segnn.train.tasks import make_task

        make_task(load_config("configs/nbody.yaml", ["model.input_irreps=null"]))


def test_predict_refuses_an_nbody_checkpoint(nbody_root, tmp_path, capsys):
    from segnn.checkpoint import save_checkpoint

    config = load_config("configs/nbody.yaml", [f"data.root={nbody_root}"])
    model = DisplacementModel(SEGNN(config.model))
    save_checkpoint(
        tmp_path / "nbody.pt",
        {"config": config.to_dict(), "model_state": model.state_dict(), "species": ["H"]},
    )
    structure = tmp_path / "water.xyz"
    structure.write_text("3\n\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n")
    assert main(["predict", "--checkpoint", str(tmp_path / "nbody.pt"), str(structure)]) == 2
    assert "segnn evaluate" in capsys.readouterr().err


def test_per_system_errors_make_the_reported_mse(nbody_root, tmp_path, load_script, capsys):
    from segnn.checkpoint import save_checkpoint
    from segnn.train.tasks import evaluate, make_task

    nbody_errors = load_script("nbody_errors")
    config = load_config(
        "configs/nbody.yaml",
        [f"data.root={nbody_root}", "model.hidden_features=16", "model.num_layers=1"],
    )
    torch.manual_seed(0)
    task = make_task(config)
    model = task.build_model().eval()
    dataset = task.datasets["test"]
    batches = [
        task.collate([dataset[i] for i in range(start, start + 8)]) for start in (0, 8, 16, 24)
    ]
    errors = task.per_system_mse(model, batches)
    assert errors.shape == (len(dataset),)
    # system 5 alone gives its own error; the mean is the split's MSE
    alone = task.per_system_mse(model, [task.collate([dataset[5]])])
    assert alone.item() == pytest.approx(errors[5].item(), rel=1e-5)
    assert evaluate(task, model, batches)["mse"] == pytest.approx(errors.mean().item())
    summary = nbody_errors.analyse(errors.numpy(), dataset, top=2)
    worst = summary["worst"][0]
    assert worst["mse"] == errors.max().item() and worst["index"] == int(errors.argmax())
    assert summary["mse_without_worst"] < summary["mse"]

    checkpoint = tmp_path / "best.pt"
    payload = {"config": config.to_dict(), "model_state": model.state_dict(), "species": ["H"]}
    save_checkpoint(checkpoint, payload)
    output = tmp_path / "errors.json"
    arguments = [str(checkpoint), "--split", "test", "--top", "2", "--output", str(output)]
    assert nbody_errors.main(arguments) == 0
    written = json.loads(output.read_text())
    assert (
        written["mse"] == pytest.approx(errors.mean().item())
        and len(written["per_system_mse"]) == 32
    )
    assert "worst systems" in capsys.readouterr().out
    assert nbody_errors.main([str(tmp_path / "missing.pt")]) == 2
