import pytest
import torch
from e3nn import o3

from segnn.o3 import (
    ConditionedTensorProduct,
    IrrepsConcat,
    balanced_irreps,
    spherical_harmonics_irreps,
    weight_balanced_irreps,
)


@pytest.mark.parametrize("features,lmax", [(128, 2), (64, 1), (32, 3), (100, 2), (16, 0)])
def test_balanced_irreps_fill_the_budget_with_sh_parity(features, lmax):
    irreps = balanced_irreps(features, lmax)
    assert irreps.dim == features
    assert [ir.l for _, ir in irreps] == list(range(lmax + 1))
    assert all(ir.p == (-1) ** ir.l for _, ir in irreps)
    dims = [mul * ir.dim for mul, ir in irreps]
    # every degree gets about the same share: l > 0 within one field of features / (lmax + 1)
    assert all(abs(d - features / (lmax + 1)) <= 2 * lmax + 1 for d in dims[1:])


def test_balanced_irreps_paper_config():
    assert balanced_irreps(128, 2) == o3.Irreps("46x0e+14x1o+8x2e")


@pytest.mark.parametrize(
    "features, lmax, lmax_attr, expected",
    [(128, 2, 3, "36x0e+36x1o+36x2e"), (64, 1, 1, "32x0e+32x1o"), (64, 0, 2, "64x0e")],
)
def test_weight_balanced_irreps_match_the_paper(features, lmax, lmax_attr, expected):
    assert weight_balanced_irreps(features, lmax, spherical_harmonics_irreps(lmax_attr)) == (
        o3.Irreps(expected)
    )


@pytest.mark.parametrize("features, lmax, lmax_attr", [(100, 2, 3), (20, 1, 2), (7, 3, 1)])
def test_weight_balanced_irreps_are_the_smallest_with_a_linear_layers_weights(
    features, lmax, lmax_attr
):
    attr = spherical_harmonics_irreps(lmax_attr)
    irreps = weight_balanced_irreps(features, lmax, attr)
    copies = irreps[0].mul
    assert all(mul == copies for mul, _ in irreps) and irreps.lmax == lmax

    def weights(copies):
        hidden = o3.Irreps([(copies, ir) for _, ir in irreps])
        product = ConditionedTensorProduct(hidden, attr, hidden)
        return sum(p.numel() for name, p in product.named_parameters() if name != "bias")

    assert weights(copies) >= features**2 > weights(copies - 1)


def test_balanced_irreps_rejects_too_small_budget():
    with pytest.raises(ValueError, match="too small"):
        balanced_irreps(8, 3)


def test_spherical_harmonics_irreps():
    assert spherical_harmonics_irreps(3) == o3.Irreps("0e+1o+2e+3o")


def test_irreps_concat_groups_equal_irreps_and_keeps_values():
    concat = IrrepsConcat(["2x0e+1x1o", "1x0e", "1x1o"])
    assert concat.irreps_out == o3.Irreps("3x0e+2x1o")
    a = torch.tensor([[1.0, 2.0, 10.0, 11.0, 12.0]])
    b = torch.tensor([[3.0]])
    c = torch.tensor([[20.0, 21.0, 22.0]])
    assert concat(a, b, c).tolist() == [[1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 20.0, 21.0, 22.0]]
