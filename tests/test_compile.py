"""Compiled node updates (``compile=True`` on a backend, ``train.compile``) compute what the
eager ones do; training on forces stays eager."""

import pytest
import torch
from torch._dynamo.utils import counters

import segnn
from segnn.backends import BACKENDS
from segnn.config import ModelConfig, load_config
from segnn.testing import example_batch
from segnn.train.trainer import Trainer


def outputs_and_gradients(model, batch):
    output = model(batch)
    return output, torch.autograd.grad((output * output).sum(), list(model.parameters()))


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", [name for name, kind in BACKENDS.items() if kind.capabilities.compile]
)
def test_compiled_updates_equal_eager_ones(backend):
    torch.manual_seed(0)
    config = ModelConfig(hidden_features=16, lmax_hidden=1, lmax_attr=2, num_layers=2)
    eager, compiled = segnn.SEGNN(config), segnn.SEGNN(config)
    compiled.load_state_dict(eager.state_dict())
    segnn.use_backend(eager, backend)
    segnn.use_backend(compiled, backend, compile=True)
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
    assert len(compiled.backend.compiled_updates) == 2
    assert graphs[0] > 0 and graphs[1] == graphs[0] and graphs[2] == graphs[0]


def test_trainer_compiles_when_asked(tmp_path):
    config = load_config(
        "configs/qm9.yaml",
        ["model.hidden_features=16", "model.num_layers=2", "train.compile=true"]
        + ["data.subset={train: 8, val: 4, test: 4}", f"train.runs_dir={tmp_path}"],
    )
    assert Trainer(config, tmp_path / "run").backend.compile  # compiled on first call


def test_training_on_forces_stays_eager(tmp_path):
    config = load_config(
        "configs/ethanol_forces.yaml",
        ["model.hidden_features=16", "model.lmax_hidden=1", "model.num_layers=1"]
        + ["train.compile=true", f"train.runs_dir={tmp_path}"],
    )
    backend = Trainer(config, tmp_path / "run").backend
    assert not backend.compile and backend.capabilities.force_training


def test_a_backend_that_cannot_compile_says_so():
    with pytest.raises(ValueError, match="torch.compile"):
        segnn.backends.make_backend("e3nn", compile=True)
