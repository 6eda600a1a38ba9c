"""Message products in the edge frame: the rotations and the per-|m| products equal the
ordinary products on the same weights. Whole models on the edge_frame backend (forces through
the rotations included): tests/test_backends.py."""

import pytest
import torch
from e3nn import o3

from segnn.backends.edge_frame.frames import FrameLayout, edge_rotations, frame_rotations
from segnn.backends.edge_frame.mlp import frame_gate, frame_gate_fields, frame_product
from segnn.backends.edge_frame.plan import FramePlan
from segnn.models.layer import product_steps
from segnn.o3 import ConditionedTensorProduct, SteerableMLP, spherical_harmonics_irreps

Y_AXIS = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)


def awkward_directions() -> torch.Tensor:
    """Random directions plus the poles, the xz plane and near-poles of both signs."""
    torch.manual_seed(0)
    special = torch.tensor(
        [
            [0.0, 1.0, 0.0],
            [0.0, -2.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 0.0, -3.0],
            [1e-9, -1.0, 0.0],
            [0.0, 1.0, 1e-12],
            [0.3, -1e-14, 0.4],
        ],
        dtype=torch.float64,
    )
    return torch.cat([special, torch.randn(40, 3, dtype=torch.float64)])


def test_rotations_take_each_edge_to_the_y_axis():
    vectors = awkward_directions()
    for l, rotation in enumerate(edge_rotations(vectors, 4), start=1):
        harmonics = o3.spherical_harmonics(l, vectors, True, normalization="component")
        target = o3.spherical_harmonics(l, Y_AXIS, True, normalization="component")
        assert (torch.einsum("eij,ej->ei", rotation, harmonics) - target).abs().max() < 1e-12
        identity = torch.eye(2 * l + 1, dtype=torch.float64)
        assert (rotation @ rotation.transpose(1, 2) - identity).abs().max() < 1e-12
    assert (torch.linalg.det(edge_rotations(vectors, 1)[0]) - 1).abs().max() < 1e-12


@pytest.mark.parametrize("lmax_attr", [1, 2, 3])
def test_product_in_the_frame_equals_the_ordinary_product(lmax_attr):
    torch.manual_seed(lmax_attr)
    attr_irreps = spherical_harmonics_irreps(lmax_attr)
    # repeated types and an output degree above the input's (3o: only through the attribute)
    irreps_in, irreps_out = o3.Irreps("5x0e+4x1o+3x2e+2x0e"), o3.Irreps("6x0e+3x1o+2x2e+1x1o+2x3o")
    product = ConditionedTensorProduct(irreps_in, attr_irreps, irreps_out).double()
    with torch.no_grad():
        product.bias.normal_()
    vectors = awkward_directions()
    attr = o3.spherical_harmonics(
        list(range(lmax_attr + 1)), vectors, True, normalization="component"
    )
    rotations = frame_rotations(vectors, 3)
    x = torch.randn(len(vectors), irreps_in.dim, dtype=torch.float64, requires_grad=True)
    ordinary = product(x, attr)
    layout_in, layout_out = FrameLayout(irreps_in), FrameLayout(irreps_out)
    framed = layout_out.from_frame(
        frame_product(product, FramePlan(product), layout_in.to_frame(x, rotations)), rotations
    )
    assert (framed - ordinary).abs().max() < 1e-12 * ordinary.abs().max()
    weights = torch.randn_like(ordinary)
    grads = [
        torch.autograd.grad((y * weights).sum(), [x, *product.parameters()])
        for y in (ordinary, framed)
    ]
    for mine, theirs in zip(*grads):
        assert (mine - theirs).abs().max() < 1e-12 * theirs.abs().max().clamp(min=1)


def test_gated_mlp_in_the_frame_float32():
    torch.manual_seed(1)
    hidden = o3.Irreps("8x0e+4x1o+3x2e")
    mlp = SteerableMLP(
        o3.Irreps("9x0e+5x1o+2x2e"), hidden, hidden, spherical_harmonics_irreps(3), gate_output=True
    )
    vectors = awkward_directions().float()
    attr = o3.spherical_harmonics([0, 1, 2, 3], vectors, True, normalization="component")
    rotations = frame_rotations(vectors, 2)
    x = torch.randn(len(vectors), mlp.irreps_in.dim)
    ordinary = mlp(x, attr)
    parts = FrameLayout(mlp.irreps_in).to_frame(x, rotations)
    for product, gate in product_steps(mlp):
        parts = frame_product(product, FramePlan(product), parts)
        if gate is not None:
            parts = frame_gate(gate, frame_gate_fields(gate), parts)
    framed = FrameLayout(mlp.irreps_out).from_frame(parts, rotations)
    assert (framed - ordinary).abs().max() < 1e-5 * ordinary.abs().max()


def test_frame_needs_spherical_harmonic_attributes():
    product = ConditionedTensorProduct("2x0e+1x1o", "2x0e+1x1o", "2x0e+1x1o")
    with pytest.raises(ValueError, match="spherical-harmonic attributes"):
        FramePlan(product)
