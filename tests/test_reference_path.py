"""segnn's tensor product agrees with e3nn's ``FullyConnectedTensorProduct`` (the ``e3nn``
backend's product) on the same weights, for every block layout. Whole models on every backend:
tests/test_backends.py."""

import pytest
import torch

from segnn.backends.e3nn import ReferenceTensorProduct
from segnn.o3.tensor_product import ConditionedTensorProduct


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
