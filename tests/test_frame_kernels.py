"""The fused CPU kernels of the paired edge-frame messages (segnn.backends.cpu_kernels.kernels): the same
numbers as the PyTorch ops they replace, gradients included, and used exactly where they apply.
Whole models on the cpu_kernels backend: tests/test_backends.py."""

import shutil
from dataclasses import dataclass

import pytest
import torch

import segnn
from segnn.backends.cpu_kernels import kernels as frame_kernels
from segnn.backends.edge_frame.frames import FrameConcat, FrameLayout, frame_rotations
from segnn.backends.edge_frame.pairs import EdgePairs, edge_pairs
from segnn.config import ModelConfig
from segnn.testing import example_batch

IRREPS = "3x0e+2x1o+2x2e"
NUM_ATOMS = 9  # the last atom is in no pair: it receives nothing

needs_kernels = pytest.mark.skipif(
    shutil.which("c++") is None, reason="no C++ compiler to build the kernels"
)


@needs_kernels
def test_the_kernels_build_where_there_is_a_compiler():
    assert frame_kernels.available()


@dataclass
class Pairs:
    """:class:`EdgePairs` and the rows sorted by receiver the kernels walk."""

    pairs: EdgePairs
    receiver_index: tuple[torch.Tensor, torch.Tensor]

    def __getattr__(self, name):
        return getattr(self.pairs, name)

    def _replace(self, **fields) -> "Pairs":
        return Pairs(self.pairs._replace(**fields), self.receiver_index)


def random_pairs(dtype, num_pairs=14, num_scalars=2):
    """Pairs of distinct atoms (some atoms in several pairs) and their receiver index."""
    generator = torch.Generator().manual_seed(0)
    source = torch.randint(0, NUM_ATOMS - 1, (num_pairs,), generator=generator)
    offset = torch.randint(1, NUM_ATOMS - 1, (num_pairs,), generator=generator)
    target = (source + offset) % (NUM_ATOMS - 1)
    edge_index = torch.stack([torch.cat([source, target]), torch.cat([target, source])])
    vectors = torch.randn(num_pairs, 3, generator=generator, dtype=dtype)
    scalars = torch.randn(num_pairs, num_scalars, generator=generator, dtype=dtype)
    pairs = edge_pairs(edge_index, frame_rotations(vectors, 2), torch.cat([scalars, scalars]), None)
    return Pairs(pairs, frame_kernels.receiver_index(pairs.receivers, NUM_ATOMS))


def random_messages(rows, layout, dtype):
    """Frame parts of ``rows`` messages laid out by ``layout``, requiring gradients."""
    parts = [torch.randn(rows, layout.widths[0], dtype=dtype)]
    parts += [torch.randn(2, rows, width, dtype=dtype) for width in layout.widths[1:]]
    return [part.requires_grad_() for part in parts]


def gather(h, pairs, concat):
    """The fused gather of ``pairs`` with ``concat``'s layout."""
    return frame_kernels.frame_gather(
        h,
        pairs.edge_scalars,
        pairs.target,
        pairs.source,
        pairs.receiver_index,
        pairs.rotations,
        *frame_kernels.gather_table(concat),
    )


def scatter_sum(parts, pairs, layout):
    """The fused rotation back and sum per receiver of messages laid out by ``layout``."""
    return frame_kernels.frame_scatter_sum(
        parts,
        pairs.rotations,
        pairs.receivers,
        pairs.receiver_index,
        *frame_kernels.scatter_table(layout),
    )


@needs_kernels
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_gather_equals_index_select_and_frame_concat(dtype, tolerance):
    pairs = random_pairs(dtype)
    concat = FrameConcat([IRREPS, IRREPS, "2x0e"])
    h = torch.randn(NUM_ATOMS, concat.irreps_in[0].dim, dtype=dtype, requires_grad=True)
    expected = concat(
        [h.index_select(0, pairs.target), h.index_select(0, pairs.source), pairs.edge_scalars],
        pairs.rotations,
    )
    parts = gather(h, pairs, concat)
    assert [part.shape for part in parts] == [part.shape for part in expected]
    for part, reference in zip(parts, expected):
        assert (part - reference).abs().max() <= tolerance * reference.abs().max()
    cotangents = [torch.randn_like(part) for part in parts]
    (grad,) = torch.autograd.grad(parts, h, cotangents)
    (reference,) = torch.autograd.grad(expected, h, cotangents)
    assert (grad - reference).abs().max() <= tolerance * reference.abs().max()


@needs_kernels
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_scatter_sum_equals_rotation_back_and_index_add(dtype, tolerance):
    pairs = random_pairs(dtype)
    layout = FrameLayout(IRREPS)
    parts = random_messages(2 * pairs.target.shape[0], layout, dtype)
    back = [rotation.flatten(0, 1) for rotation in pairs.back_rotations]
    messages = layout.from_frame(parts, back)
    expected = messages.new_zeros(NUM_ATOMS, messages.shape[1])
    expected = expected.index_add(0, pairs.receivers, messages)
    sums = scatter_sum(parts, pairs, layout)
    assert sums.shape == expected.shape
    assert (sums - expected).abs().max() <= tolerance * expected.abs().max()
    assert sums[-1].abs().max() == 0  # the atom in no pair
    cotangent = torch.randn_like(sums)
    grads = torch.autograd.grad(sums, parts, cotangent)
    references = torch.autograd.grad(expected, parts, cotangent)
    for grad, reference in zip(grads, references):
        assert (grad - reference).abs().max() <= tolerance * reference.abs().max()


@needs_kernels
def test_gradients_pass_gradcheck():
    pairs = random_pairs(torch.float64, num_pairs=5, num_scalars=1)
    concat = FrameConcat([IRREPS, IRREPS, "1x0e"])
    layout = FrameLayout(IRREPS)
    h = torch.randn(NUM_ATOMS, concat.irreps_in[0].dim, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h: tuple(gather(h, pairs, concat)), (h,))
    parts = random_messages(2 * pairs.target.shape[0], layout, torch.float64)
    assert torch.autograd.gradcheck(lambda *p: scatter_sum(list(p), pairs, layout), tuple(parts))


QM9_LIKE = {  # squared distances, instance norm, weight-balanced irreps: the kernels apply
    "hidden_features": 32,
    "lmax_hidden": 2,
    "lmax_attr": 3,
    "num_layers": 2,
    "hidden_allocation": "weights",
}


def count_fused_calls(monkeypatch) -> list[int]:
    calls = [0]
    gather = frame_kernels.frame_gather

    def counted(*args, **kwargs):
        calls[0] += 1
        return gather(*args, **kwargs)

    monkeypatch.setattr(frame_kernels, "frame_gather", counted)
    return calls


@needs_kernels
def test_forces_take_the_pytorch_ops(monkeypatch):
    """The kernels give no gradient with respect to the rotations: with positions requiring
    one, the cpu_kernels backend runs the PyTorch ops, and forces match edge_frame's."""
    calls = count_fused_calls(monkeypatch)
    batch = example_batch(names=("CH3CH2OH", "HCN"))
    forces = []
    for backend in ("edge_frame", "cpu_kernels"):
        torch.manual_seed(0)
        model = segnn.SEGNN(ModelConfig(**QM9_LIKE)).double()
        segnn.use_backend(model, backend)
        pos = batch.pos.detach().requires_grad_()
        moved = batch.clone()
        moved.pos = pos
        forces.append(-torch.autograd.grad(model(moved).sum(), pos)[0])
        if backend == "cpu_kernels":
            assert calls[0] == 0
            model(batch)  # without a position gradient the kernels run
            assert calls[0] == QM9_LIKE["num_layers"]
    assert (forces[1] - forces[0]).abs().max() <= 1e-12 * forces[0].abs().max()


def test_a_failed_build_warns_and_keeps_the_pytorch_ops(monkeypatch, tmp_path):
    import torch.utils.cpp_extension

    import segnn.extensions

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no compiler here")

    calls = count_fused_calls(monkeypatch)
    monkeypatch.setattr(torch.utils.cpp_extension, "load", no_compiler)
    monkeypatch.setenv("SEGNN_EXTENSION_DIR", str(tmp_path))  # nothing built there
    monkeypatch.setattr(segnn.extensions, "_loaded", {})  # as in a fresh process
    frame_kernels.available.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="could not be built.*no compiler here"):
            assert not frame_kernels.available()
        assert segnn.backends.make_backend("auto").name != "cpu_kernels"
        assert calls[0] == 0
    finally:
        frame_kernels.available.cache_clear()


@needs_kernels
def test_a_second_derivative_raises_instead_of_being_wrong():
    pairs = random_pairs(torch.float64)
    concat = FrameConcat([IRREPS, IRREPS, "2x0e"])
    h = torch.randn(NUM_ATOMS, concat.irreps_in[0].dim, dtype=torch.float64, requires_grad=True)
    parts = gather(h, pairs, concat)
    (grad,) = torch.autograd.grad(sum(part.pow(2).sum() for part in parts), h, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()


@needs_kernels
def test_inconsistent_inputs_raise_clear_errors():
    pairs = random_pairs(torch.float64)
    concat = FrameConcat([IRREPS, IRREPS, "2x0e"])
    h = torch.randn(NUM_ATOMS, concat.irreps_in[0].dim, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"receivers\[0\] = 99 is outside"):
        gather(h, pairs._replace(target=torch.full_like(pairs.target, 99)), concat)
    with pytest.raises(RuntimeError, match="block 0 of the table does not fit its input"):
        gather(h[:, :2], pairs, concat)
    with pytest.raises(RuntimeError, match=r"D\^1 has shape \[3, 4, 3\]"):
        gather(h, pairs._replace(rotations=[r[:3] for r in pairs.rotations]), concat)
    layout = FrameLayout(IRREPS)
    parts = random_messages(2 * pairs.target.shape[0], layout, torch.float32)
    with pytest.raises(
        RuntimeError, match="a rotation must be a contiguous 3-d Float tensor, got Double"
    ):
        scatter_sum(parts, pairs, layout)
