"""Fixed-shape batches (scripts/padding.py, what the benchmark's fullgraph variants use): the padding is inert, and a QM9 training step on
padded batches compiles with ``fullgraph=True`` (no graph break, no host synchronisation),
once per bucket."""

import pytest
import torch
from padding import PaddedCollate, bucket, pad_batch  # scripts/padding.py
from torch._dynamo.utils import counters

from segnn.config import load_config
from segnn.data import is_paired
from segnn.models import use_backend
from segnn.testing import example_batch
from segnn.train.tasks import make_task

SMALL = [
    "model.hidden_features=16",
    "model.num_layers=2",
    "data.subset={train: 24, val: 1, test: 1}",
]


@pytest.fixture(scope="module")
def task():
    return make_task(load_config("configs/qm9.yaml", SMALL))


def items(task, start, stop):
    return [task.datasets["train"][i] for i in range(start, stop)]


def test_padded_batches_have_the_asked_shapes_and_keep_the_layout():
    batch = example_batch(names=("H2O", "CH3CH2OH"))
    atoms, edges = batch.num_nodes, batch.edge_index.shape[1]
    padded = pad_batch(batch, atoms + 5, edges + 6)
    assert padded.num_nodes == atoms + 5 and padded.edge_index.shape[1] == edges + 6
    assert padded.num_graphs == 3 and padded.graph_loss_weight.tolist() == [0.5, 0.5, 0.0]
    assert padded.atom_loss_weight[atoms:].abs().sum() == 0  # the padding does not count
    assert padded.atom_loss_weight.sum() == pytest.approx(1.0)
    half = padded.edge_index.shape[1] // 2
    assert torch.equal(padded.edge_index[:, half:], padded.edge_index[:, :half].flip(0))
    assert is_paired(padded)
    # padding atoms only in the padding graph, joined only to each other
    padding = padded.batch[padded.edge_index] == 2
    assert torch.equal(padding[0], padding[1]) and int(padding[0].sum()) == 6
    assert bucket(65, 64) == 128 and bucket(64, 64) == 64
    with pytest.raises(ValueError, match="at least two"):
        pad_batch(batch, atoms + 1, edges)
    with pytest.raises(ValueError, match="an even number"):
        pad_batch(batch, atoms + 2, edges + 1)


def test_padding_is_inert_for_outputs_losses_and_gradients(task):
    torch.manual_seed(0)
    model = task.build_model().double()
    real = task.collate(items(task, 0, 8)).apply(
        lambda t: t.double() if t.is_floating_point() else t
    )
    padded = PaddedCollate(task.collate, atom_step=64, edge_step=256)(items(task, 0, 8))
    padded = padded.apply(lambda t: t.double() if t.is_floating_point() else t)
    assert padded.num_nodes > real.num_nodes
    results = []
    for batch in (real, padded):
        model.zero_grad()
        output = model(batch)[: real.num_graphs]
        loss = task.loss(model, batch)
        loss.backward()
        results.append(
            (output.detach(), loss.detach(), [p.grad.clone() for p in model.parameters()])
        )
    (output, loss, grads), (output_p, loss_p, grads_p) = results
    assert torch.allclose(output_p, output, rtol=0, atol=1e-10)
    assert abs(float(loss_p - loss)) <= 1e-12
    scale = max(float(g.abs().max()) for g in grads)
    assert all(float((a - b).abs().max()) <= 1e-10 * scale for a, b in zip(grads_p, grads))


def test_a_padded_training_step_compiles_as_one_graph_once_per_bucket(task):
    torch.manual_seed(0)
    model = task.build_model()
    use_backend(model, "edge_frame")
    collate = PaddedCollate(task.collate, atom_step=256, edge_step=2048)
    first, second = collate(items(task, 0, 8)), collate(items(task, 8, 16))
    assert first.pos.shape == second.pos.shape and first.edge_index.shape == second.edge_index.shape

    def loss(batch):
        return task.loss(model, batch)

    step = torch.compile(loss, fullgraph=True, dynamic=False)  # raises on any graph break
    counters.clear()
    for batch in (first, second):  # compiled first: nothing may be left to build while tracing
        model.zero_grad()
        actual = step(batch)
        actual.backward()
        compiled = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        expected = loss(batch)
        expected.backward()
        assert torch.allclose(actual, expected, rtol=1e-5)
        for mine, theirs in zip(compiled, [p.grad for p in model.parameters()]):
            assert (mine - theirs).abs().max() <= 1e-4 * theirs.abs().max().clamp(min=1e-3)
    assert counters["stats"]["unique_graphs"] == 1  # the second batch reused the first's code
