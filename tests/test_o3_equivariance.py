"""Every steerable building block commutes with O(3): rotations and reflections."""

import pytest
import torch
from e3nn import o3

from segnn.o3 import (
    ConditionedTensorProduct,
    EquivariantInstanceNorm,
    Gate,
    GatedTensorProduct,
    SphericalHarmonicsAttributes,
    SteerableMLP,
    balanced_irreps,
    spherical_harmonics_irreps,
)
from segnn.testing import EquivarianceError, assert_module_equivariant

HIDDEN = balanced_irreps(24, 2)


def features(irreps, rows=20, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, o3.Irreps(irreps).dim, dtype=dtype, generator=generator)


def attributes(lmax, rows=20, dtype=torch.float64, seed=1):
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(rows, 3, dtype=dtype, generator=generator)
    return SphericalHarmonicsAttributes(lmax).edge_attributes(vectors)


@pytest.mark.parametrize("lmax_attr", [1, 2, 3])
def test_spherical_harmonics_attributes_are_steerable(lmax_attr):
    sh = SphericalHarmonicsAttributes(lmax_attr)
    vectors = torch.randn(30, 3, dtype=torch.float64)
    assert_module_equivariant(sh.edge_attributes, [vectors], ["1x1o"], sh.irreps)


def test_node_attributes_are_edge_means_with_unit_scalar():
    sh = SphericalHarmonicsAttributes(2)
    edge_attr = attributes(2, rows=4)
    target = torch.tensor([0, 0, 1, 1])
    node_attr = sh.node_attributes(edge_attr, target, num_nodes=3)
    assert torch.allclose(node_attr[0, 1:], edge_attr[:2, 1:].mean(0))
    assert torch.all(node_attr[:, 0] == 1)
    # node 2 has no edges: (1, 0, ..., 0)
    assert node_attr[2].tolist() == [1.0] + [0.0] * (sh.irreps.dim - 1)


@pytest.mark.parametrize("parameterization", ["normalized", "standard"])
@pytest.mark.parametrize("lmax_attr", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_conditioned_tensor_product(lmax_attr, dtype, parameterization):
    irreps_attr = spherical_harmonics_irreps(lmax_attr)
    tp = ConditionedTensorProduct(HIDDEN, irreps_attr, HIDDEN, parameterization).to(dtype)
    torch.nn.init.normal_(tp.bias)
    x, a = features(HIDDEN, dtype=dtype), attributes(lmax_attr, dtype=dtype)
    assert_module_equivariant(tp, [x, a], [HIDDEN, irreps_attr], HIDDEN)


def test_tensor_product_bias_only_on_scalars():
    tp = ConditionedTensorProduct("4x0e+2x1o", "0e+1o", "3x0e+2x1o")
    assert tp.bias.shape == (3,)
    with torch.no_grad():
        tp.bias.fill_(5.0)
    zero = tp(torch.zeros(1, 10), torch.zeros(1, 4))
    assert zero[0, :3].tolist() == [5.0, 5.0, 5.0]
    assert zero[0, 3:].abs().max() == 0


def test_tensor_product_keeps_unit_scale():
    tp = ConditionedTensorProduct(HIDDEN, spherical_harmonics_irreps(3), HIDDEN)
    out = tp(
        features(HIDDEN, rows=2000, dtype=torch.float32),
        attributes(3, rows=2000, dtype=torch.float32),
    )
    assert 0.3 < out.pow(2).mean().sqrt() < 3


@pytest.mark.parametrize("normalize", [False, True])
def test_gate_layout_and_equivariance(normalize):
    gate = Gate(HIDDEN, normalize).double()
    # one gate per l>0 field
    assert gate.irreps_in.dim == HIDDEN.dim + sum(mul for mul, ir in HIDDEN if ir.l > 0)
    assert gate.irreps_out == HIDDEN
    x = features(gate.irreps_in)
    assert_module_equivariant(gate, [x], [gate.irreps_in], gate.irreps_out)


@pytest.mark.parametrize("lmax_attr", [1, 2, 3])
@pytest.mark.parametrize("official", [False, True])
def test_gated_tensor_product_and_mlp(lmax_attr, official):
    irreps_attr = spherical_harmonics_irreps(lmax_attr)
    x, a = features(HIDDEN), attributes(lmax_attr)
    options = ("standard", True) if official else ("normalized", False)
    gated = GatedTensorProduct(HIDDEN, irreps_attr, HIDDEN, *options).double()
    assert_module_equivariant(gated, [x, a], [HIDDEN, irreps_attr], HIDDEN)
    mlp = SteerableMLP(
        HIDDEN,
        HIDDEN,
        "3x0e+1x1o+1x2e",
        irreps_attr,
        num_layers=3,
        parameterization=options[0],
        normalize_activations=options[1],
    ).double()
    assert_module_equivariant(mlp, [x, a], [HIDDEN, irreps_attr], mlp.irreps_out)


def test_instance_norm_is_equivariant_and_normalises_per_graph():
    norm = EquivariantInstanceNorm(HIDDEN).double()
    x = features(HIDDEN) * 7 + 3
    batch = torch.tensor([0] * 8 + [1] * 12)
    out = norm(x, batch)
    assert_module_equivariant(lambda h: norm(h, batch), [x], [HIDDEN], HIDDEN)
    scalars = out[:, : HIDDEN[0].mul]
    for graph in (0, 1):
        graph_scalars = scalars[batch == graph]
        assert torch.allclose(
            graph_scalars.mean(0), torch.zeros(HIDDEN[0].mul, dtype=torch.float64), atol=1e-12
        )
        assert torch.allclose(
            graph_scalars.pow(2).mean(0), torch.ones(HIDDEN[0].mul, dtype=torch.float64), atol=1e-3
        )


def norm_input_with_an_empty_graph():
    x = features(HIDDEN) * 7 + 3
    return x, torch.tensor([0] * 8 + [2] * 12)  # graph 1 has no nodes


def test_instance_norm_skips_empty_graphs():
    norm = EquivariantInstanceNorm(HIDDEN).double()
    x, batch = norm_input_with_an_empty_graph()
    expected = norm(x[:8], torch.zeros(8, dtype=torch.long))
    assert (norm(x, batch)[:8] - expected).abs().max() < 1e-12


@pytest.mark.slow
def test_compiled_instance_norm_equals_eager():
    """Compiled, the norm keeps per-graph statistics in as many slots as rows (it cannot read
    batch.max()); eager it sizes them by the graphs."""
    norm = EquivariantInstanceNorm(HIDDEN).double()
    x, batch = norm_input_with_an_empty_graph()
    expected = norm(x, batch)
    assert (torch.compile(norm, dynamic=False)(x, batch) - expected).abs().max() < 1e-12


class SiLUOnEverything(torch.nn.Module):
    """Negative control: a pointwise nonlinearity on l > 0 components is not equivariant."""

    def forward(self, x):
        return torch.nn.functional.silu(x)


def test_kit_flags_pointwise_nonlinearity_on_vectors():
    x = features("4x0e+4x1o")
    with pytest.raises(EquivarianceError):
        assert_module_equivariant(SiLUOnEverything(), [x], ["4x0e+4x1o"], "4x0e+4x1o")


def test_kit_flags_wrong_parity():
    # a cross product is a pseudovector (1e): declaring its output 1o must fail under reflections
    a, b = features("1x1o", seed=3), features("1x1o", seed=4)
    with pytest.raises(EquivarianceError, match="reflection"):
        assert_module_equivariant(torch.linalg.cross, [a, b], ["1x1o", "1x1o"], "1x1o")
    assert_module_equivariant(torch.linalg.cross, [a, b], ["1x1o", "1x1o"], "1x1e")


def test_tensor_product_matches_e3nn_fully_connected_product():
    """Same weights → same numbers as e3nn's FullyConnectedTensorProduct (an independent code)."""
    irreps_in, irreps_attr, irreps_out = "5x0e+3x1o+2x2e", "0e+1o+2e+3o", "4x0e+3x1o+2x2e+1x3o"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn caches its CG coefficients in the default dtype
    try:
        reference = o3.FullyConnectedTensorProduct(irreps_in, irreps_attr, irreps_out)
    finally:
        torch.set_default_dtype(previous)
    ours = ConditionedTensorProduct(irreps_in, irreps_attr, irreps_out).double()
    views = list(zip(reference.instructions, reference.weight_views()))
    with torch.no_grad():
        # e3nn: one [mul_in, mul_attr=1, mul_out] block per (input, attribute, output) irrep;
        # ours: one [mul_in, mul_out] view per instruction (the published layout)
        theirs = {(i.i_in1, i.i_in2, i.i_out): view[:, 0, :] for i, view in views}
        for path, weight in zip(ours.instructions, ours.weight_views()):
            weight.copy_(theirs[path.input, path.attribute, path.output])
    x, a = features(irreps_in), attributes(3)
    assert torch.allclose(ours(x, a), reference(x, a), atol=1e-12)


def test_coefficients_stay_exact_through_float32_round_trip():
    irreps_attr = spherical_harmonics_irreps(3)
    tp = ConditionedTensorProduct(HIDDEN, irreps_attr, HIDDEN)
    tp(features(HIDDEN, dtype=torch.float32), attributes(3, dtype=torch.float32))
    tp = tp.float().double()
    assert_module_equivariant(tp, [features(HIDDEN), attributes(3)], [HIDDEN, irreps_attr], HIDDEN)
