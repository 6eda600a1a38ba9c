"""Both directions of an edge in one frame (segnn.o3.edge_pairs): which graphs pair up, and
models computing messages pair by pair equal the per-edge frame and the ordinary path."""

import pytest
import torch

import segnn
import segnn.models.segnn as segnn_model
from segnn.config import ModelConfig
from segnn.o3.edge_frame import FrameConcat
from segnn.o3.edge_pairs import PairMirror, forward_edges
from segnn.testing import (
    assert_model_equivariant,
    assert_same_outputs_and_gradients,
    example_batch,
)


def test_symmetric_graphs_pair_up():
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 0], [1, 0, 2, 1, 0, 2]])
    assert forward_edges(edge_index).tolist() == [0, 2, 5]
    doubled = torch.cat([edge_index, edge_index[:, :2]], dim=1)  # a duplicate with its reverse
    assert forward_edges(doubled).tolist() == [0, 2, 5, 6]
    assert forward_edges(example_batch().edge_index) is not None  # radius graphs are symmetric


@pytest.mark.parametrize(
    "edge_index",
    [
        [[0, 1, 1], [1, 0, 2]],  # an edge without its reverse
        [[0, 1, 1, 2], [1, 0, 2, 0]],  # as many edges each way, not reverses of each other
        [[0, 1, 2, 2], [1, 0, 2, 2]],  # self-loops
        [[0, 1, 0], [1, 0, 1]],  # a duplicate without a duplicate reverse
        [[], []],
    ],
    ids=["missing-reverse", "unmatched", "self-loop", "duplicate", "empty"],
)
def test_other_graphs_do_not(edge_index):
    assert forward_edges(torch.tensor(edge_index, dtype=torch.long).view(2, -1)) is None


def test_mirrored_inputs_need_equal_irreps():
    with pytest.raises(ValueError, match="mirrored inputs need equal irreps"):
        PairMirror(FrameConcat(["4x0e+2x1o", "4x0e+3x1o", "1x0e"]))


def with_charges_and_velocities(batch):
    torch.manual_seed(1)
    batch.charge = torch.randn(batch.num_nodes, 1, dtype=batch.pos.dtype)
    batch.vel = torch.randn(batch.num_nodes, 3, dtype=batch.pos.dtype)
    return batch


MODELS = {
    # the QM9 model's kind: squared distances, instance norm, weight-balanced irreps
    "qm9": ({"hidden_features": 32, "lmax_hidden": 2, "lmax_attr": 3, "num_layers": 2}, None),
    # smooth radial basis (edge weights, radial channel weights), charges and velocities
    "bessel-charges": (
        {
            "hidden_features": 24,
            "lmax_hidden": 2,
            "lmax_attr": 2,
            "num_layers": 2,
            "radial": "bessel",
            "charge_product": True,
            "velocity_attribute": True,
            "norm": "none",
        },
        2.0,
    ),
}


def outputs_and_gradients(model, batch):
    """The output, and the gradients of a loss on it with respect to parameters and positions."""
    pos = batch.pos.detach().requires_grad_()
    batch = batch.clone()
    batch.pos = pos
    output = model(batch)
    gradients = torch.autograd.grad(output.pow(2).sum(), [pos, *model.parameters()])
    return output.detach(), gradients


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_paired_messages_equal_per_edge_frames_and_the_ordinary_path(
    name, dtype, tolerance, monkeypatch
):
    options, cutoff = MODELS[name]
    batch = with_charges_and_velocities(
        example_batch(dtype=dtype, names=("H2O", "CH3CH2OH", "CH3COOH", "HCN"))
    )
    results = {}
    for path in ("ordinary", "per-edge frame", "pairs"):
        torch.manual_seed(0)
        config = ModelConfig(**options, edge_frame=path != "ordinary")
        model = segnn.SEGNN(config, cutoff=cutoff).to(dtype)
        if path == "per-edge frame":  # as for a graph that is not symmetric
            monkeypatch.setattr(segnn_model, "forward_edges", lambda edge_index: None)
        results[path] = outputs_and_gradients(model, batch)
        monkeypatch.undo()
    for path in ("per-edge frame", "pairs"):
        assert_same_outputs_and_gradients(results[path], results["ordinary"], tolerance, path)


def test_paired_model_is_equivariant_and_ignores_the_order_of_edges():
    torch.manual_seed(0)
    options, cutoff = MODELS["bessel-charges"]
    model = segnn.SEGNN(ModelConfig(**options, edge_frame=True), cutoff=cutoff).double()
    batch = with_charges_and_velocities(example_batch(names=("CH3CH2OH", "C6H6", "CH3COOH")))
    error = assert_model_equivariant(model, batch, model.irreps_out, vector_keys=["vel"], trials=3)
    assert error < 1e-9
    shuffled = batch.clone()
    shuffled.edge_index = batch.edge_index[:, torch.randperm(batch.edge_index.shape[1])]
    expected = model(batch)
    assert (model(shuffled) - expected).abs().max() <= 1e-12 * expected.abs().max()


def test_a_graph_that_is_not_symmetric_takes_the_per_edge_frame():
    torch.manual_seed(0)
    options, _ = MODELS["qm9"]
    batch = example_batch(names=("CH3CH2OH", "HCN"))
    batch.edge_index = batch.edge_index[:, 1:]  # one edge without its reverse
    outputs = []
    for edge_frame in (False, True):
        torch.manual_seed(0)
        outputs.append(segnn.SEGNN(ModelConfig(**options, edge_frame=edge_frame)).double()(batch))
    assert (outputs[1] - outputs[0]).abs().max() <= 1e-10 * outputs[0].abs().max()
