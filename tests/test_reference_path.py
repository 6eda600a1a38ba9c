"""segnn's tensor products agree with the e3nn reference path on the same weights: outputs and
gradients, float64 and float32, for whole models."""

import pytest
import torch

import segnn
from segnn.o3.reference import ReferenceTensorProduct, use_reference_tensor_products
from segnn.o3.tensor_product import ConditionedTensorProduct
from segnn.testing import assert_same_outputs_and_gradients, example_batch


def outputs_and_gradients(model, batch):
    model.zero_grad()
    output = model(batch)
    output.pow(2).sum().backward()
    return output.detach().clone(), [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("parameterization", ["normalized", "standard"])
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_reference_path_matches_on_a_qm9_model(dtype, tolerance, parameterization):
    torch.manual_seed(0)
    model = segnn.build_model(
        {
            "model": {
                "hidden_features": 32,
                "lmax_hidden": 2,
                "lmax_attr": 3,
                "num_layers": 2,
                "parameterization": parameterization,
            }
        }
    ).to(dtype)
    # no highly symmetric molecules (CH4, C6H6, CF4): their vector features vanish by symmetry
    # and the instance norm of ~0 vectors amplifies float32 rounding differently on each path
    batch = example_batch(dtype=dtype, names=("H2O", "CH3CH2OH", "CH3COOH", "HCN"))
    ours = outputs_and_gradients(model, batch)
    use_reference_tensor_products(model)
    assert_same_outputs_and_gradients(ours, outputs_and_gradients(model, batch), tolerance)
    use_reference_tensor_products(model, enabled=False)
    again, _ = outputs_and_gradients(model, batch)
    assert torch.equal(again, ours[0])


@pytest.mark.parametrize(
    ("irreps_in", "irreps_attr", "irreps_out"),
    [
        # repeated irrep types in the input and output, attribute copies, pseudo-tensors,
        # an output that no path reaches (2o) and zero-width products
        ("3x0e+2x1o+4x0e+1x2e", "2x0e+1x1o+1x1e", "2x1o+3x0e+1x1o+2x0e+1x1e+1x2o"),
        ("1x0e", "1x0e", "5x0e"),
        ("2x1o", "1x1o", "1x0e+1x1e+1x2e"),
    ],
)
@pytest.mark.parametrize("parameterization", ["normalized", "standard"])
def test_every_block_layout_matches_e3nn(irreps_in, irreps_attr, irreps_out, parameterization):
    torch.manual_seed(0)
    product = ConditionedTensorProduct(
        irreps_in, irreps_attr, irreps_out, parameterization
    ).double()
    with torch.no_grad():
        product.bias.normal_()
    reference = ReferenceTensorProduct(product)
    for rows in (7, 0):
        x = torch.randn(rows, product.in_dim, dtype=torch.float64, requires_grad=True)
        attr = torch.randn(rows, product.attr_dim, dtype=torch.float64)
        ours, theirs = product(x, attr), reference(x, attr)
        assert ours.shape == (rows, product.out_dim)
        assert torch.allclose(ours, theirs, atol=1e-12)
        if rows:
            (gradient,) = torch.autograd.grad(ours.pow(2).sum(), x)
            (expected,) = torch.autograd.grad(theirs.pow(2).sum(), x)
            assert torch.allclose(gradient, expected, atol=1e-12)


def test_padded_small_couplings_match_e3nn():
    """On CPUs a vector output with few multiply-adds per row pads its coupling with zeros
    (torch's batched matmul skips BLAS below 400); the result must not change."""
    torch.manual_seed(1)
    product = ConditionedTensorProduct("32x0e+32x1o", "1x0e+1x1o", "32x0e+32x1o").double()
    assert product._cpu_padding == [0, 1]  # 1o output: [3, 4] @ [4, 32] is padded to [3, 5]
    x = torch.randn(11, product.in_dim, dtype=torch.float64, requires_grad=True)
    attr = torch.randn(11, product.attr_dim, dtype=torch.float64)
    ours, theirs = product(x, attr), ReferenceTensorProduct(product)(x, attr)
    assert torch.allclose(ours, theirs, atol=1e-12)
    (gradient,) = torch.autograd.grad(ours.pow(2).sum(), x)
    (expected,) = torch.autograd.grad(theirs.pow(2).sum(), x)
    assert torch.allclose(gradient, expected, atol=1e-12)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_the_fastest_path_matches_the_reference_path(dtype, tolerance, monkeypatch):
    """The benchmark's fast backends (edge frame, edge pairs, fused frame kernels) against its
    reference backend (e3nn products, ordinary messages), on the same weights."""
    from segnn.o3 import frame_kernels

    calls = []
    gather = frame_kernels.frame_gather
    monkeypatch.setattr(
        frame_kernels, "frame_gather", lambda *args: calls.append(1) or gather(*args)
    )
    options = {
        "hidden_features": 32,
        "lmax_hidden": 2,
        "lmax_attr": 3,
        "num_layers": 2,
        "parameterization": "standard",
    }
    batch = example_batch(dtype=dtype, names=("H2O", "CH3CH2OH", "CH3COOH", "HCN"))
    results = []
    for fast in (True, False):
        torch.manual_seed(0)
        model = segnn.build_model({"model": options | {"edge_frame": fast}}).to(dtype)
        use_reference_tensor_products(model, enabled=not fast)
        results.append(outputs_and_gradients(model, batch))
    assert_same_outputs_and_gradients(results[0], results[1], tolerance)
    assert len(calls) == options["num_layers"] or not frame_kernels.available()
