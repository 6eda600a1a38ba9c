"""``train.compile``: compiled layers compute what the eager ones do; energy models stay eager."""

import pytest
import torch
from torch._dynamo.utils import counters

import segnn
import segnn.models.segnn as segnn_model
from segnn.config import ModelConfig, load_config
from segnn.models import compile_layers
from segnn.testing import example_batch
from segnn.train.trainer import Trainer


def outputs_and_gradients(model, batch):
    output = model(batch)
    return output, torch.autograd.grad((output * output).sum(), list(model.parameters()))


@pytest.mark.slow
@pytest.mark.parametrize("path", ["ordinary", "per-edge frame", "pairs"])
def test_compiled_layers_equal_eager_ones(path, monkeypatch):
    torch.manual_seed(0)
    config = ModelConfig(
        hidden_features=16, lmax_hidden=1, lmax_attr=2, num_layers=2, edge_frame=path != "ordinary"
    )
    if path == "per-edge frame":  # as for graphs that are not symmetric
        monkeypatch.setattr(segnn_model, "forward_edges", lambda edge_index: None)
    eager, compiled = segnn.SEGNN(config), segnn.SEGNN(config)
    compiled.load_state_dict(eager.state_dict())
    assert compile_layers(compiled) == 2
    # batches of different sizes: dynamic shapes, one graph per function for all sizes
    # (and all layers); the second and third calls compile nothing new
    graphs = []
    for names in (("H2O", "CH4", "NH3"), ("C2H6", "CH3OH"), ("H2O",)):
        batch = example_batch(dtype=torch.float32, names=names)
        expected, expected_grads = outputs_and_gradients(eager, batch)
        actual, actual_grads = outputs_and_gradients(compiled, batch)
        assert (actual - expected).abs().max() <= 1e-5 * expected.abs().max()
        for mine, theirs in zip(actual_grads, expected_grads):
            assert (mine - theirs).abs().max() <= 1e-4 * theirs.abs().max().clamp(min=1e-3)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] > 0 and graphs[1] == graphs[0] and graphs[2] == graphs[0]


def test_trainer_compiles_the_layers_when_asked(tmp_path):
    config = load_config(
        "configs/qm9.yaml",
        ["model.hidden_features=16", "model.num_layers=2", "train.compile=true"]
        + ["data.subset={train: 8, val: 4, test: 4}", f"train.runs_dir={tmp_path}"],
    )
    assert Trainer(config, tmp_path / "run").compiled_layers == 2  # compiled on first call


def test_energy_models_train_eager_with_a_warning(tmp_path):
    config = load_config(
        "configs/ethanol_forces.yaml",
        ["model.hidden_features=16", "model.lmax_hidden=1", "model.num_layers=1"]
        + ["train.compile=true", f"train.runs_dir={tmp_path}"],
    )
    with pytest.warns(UserWarning, match="energy models run eager"):
        trainer = Trainer(config, tmp_path / "run")
    assert trainer.compiled_layers == 0
