"""Irreducible-representation bookkeeping for steerable features.

All hidden features in segnn carry *spherical-harmonic parity*: degree ``l`` has parity
``(-1)**l`` (``0e, 1o, 2e, 3o, ...``). Spherical harmonics of a polar vector have exactly this
parity, so tensor products of such features with edge attributes stay O(3)-equivariant,
reflections included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from e3nn import o3


def concatenate(tensors: list[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.cat`` that returns a single tensor as it is (no copy, no extra autograd node)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=dim)


def sh_irrep(l: int) -> o3.Irrep:
    """The irrep of degree ``l`` with spherical-harmonic parity ``(-1)**l``."""
    return o3.Irrep(l, (-1) ** l)


def spherical_harmonics_irreps(lmax: int) -> o3.Irreps:
    """``1x0e + 1x1o + ... + 1x(lmax)`` — the irreps of spherical harmonics up to ``lmax``."""
    if lmax < 0:
        raise ValueError(f"lmax must be >= 0, got {lmax}")
    return o3.Irreps([(1, sh_irrep(l)) for l in range(lmax + 1)])


def balanced_irreps(num_features: int, lmax: int) -> o3.Irreps:
    """Hidden irreps that give each degree ``l <= lmax`` about the same number of dimensions.

    Degree ``l`` gets ``floor(num_features / (lmax + 1) / (2l + 1))`` copies; whatever is left of
    the budget goes to extra scalars, so the total dimension is exactly ``num_features``.
    Example: ``balanced_irreps(128, 2) == 46x0e + 14x1o + 8x2e`` (46 + 42 + 40 = 128).
    """
    if lmax < 0:
        raise ValueError(f"lmax must be >= 0, got {lmax}")
    share = num_features / (lmax + 1)
    multiplicities = [int(share // (2 * l + 1)) for l in range(lmax + 1)]
    if any(m == 0 for m in multiplicities[1:]):
        raise ValueError(
            f"num_features={num_features} is too small for lmax={lmax}: degree {lmax} would get "
            f"no channel; use at least {(lmax + 1) * (2 * lmax + 1)} features"
        )
    used = sum(m * (2 * l + 1) for l, m in enumerate(multiplicities))
    multiplicities[0] += num_features - used
    return o3.Irreps([(m, sh_irrep(l)) for l, m in enumerate(multiplicities)])


def weight_balanced_irreps(num_features: int, lmax: int, irreps_attr: o3.Irreps | str) -> o3.Irreps:
    """``n x (0e + 1o + ... + lmax)``: the paper's *weight-balanced* hidden irreps.

    ``n`` is the smallest multiplicity for which a conditioned tensor product from these irreps
    to themselves, with attribute ``irreps_attr``, has at least as many weights as a linear layer
    on ``num_features`` scalars (``num_features**2``); every path ``l_in ⊗ l_attr → l_out``
    carries ``n * n`` weights. Examples: ``(128, 2, Y up to 3) → 36x0e+36x1o+36x2e`` (the paper's
    QM9 model), ``(64, 1, Y up to 1) → 32x0e+32x1o`` (its N-body model).
    """
    if lmax < 0:
        raise ValueError(f"lmax must be >= 0, got {lmax}")
    degrees = [sh_irrep(l) for l in range(lmax + 1)]
    num_paths = sum(
        mul
        for ir_in in degrees
        for mul, ir_attr in o3.Irreps(irreps_attr)
        for ir_out in degrees
        if ir_out in ir_in * ir_attr
    )
    copies = math.ceil(num_features / math.sqrt(num_paths))
    while (copies - 1) ** 2 * num_paths >= num_features**2:
        copies -= 1
    return o3.Irreps([(copies, ir) for ir in degrees])


def scalar_irreps(num_features: int) -> o3.Irreps:
    """``num_features x 0e``."""
    return o3.Irreps(f"{num_features}x0e")


class IrrepsConcat(torch.nn.Module):
    """Concatenate features of several irreps into one *simplified* layout.

    ``torch.cat`` of ``8x0e+2x1o`` and ``4x0e`` would give the unsimplified ``8x0e+2x1o+4x0e``;
    this module regroups the columns into ``12x0e+2x1o`` (sorted by degree, then parity) with a
    single precomputed gather, so downstream tensor products see fewer, larger paths.

    Inputs: tensors of shape ``[..., irreps_i.dim]``; output ``[..., irreps_out.dim]``.
    """

    def __init__(self, irreps_list: Sequence[o3.Irreps | str]):
        super().__init__()
        irreps_list = [o3.Irreps(irreps) for irreps in irreps_list]
        blocks = []  # (irrep, input index, block number within that input, multiplicity)
        for index, irreps in enumerate(irreps_list):
            for number, (mul, ir) in enumerate(irreps):
                blocks.append((ir, index, number, mul))
        blocks.sort(key=lambda block: block[:2])  # stable: inputs keep their order per irrep
        self.irreps_in = irreps_list
        self.irreps_out = o3.Irreps([(mul, ir) for ir, _, _, mul in blocks]).simplify()
        # each input is split into its blocks, concatenated in output order: the backward is
        # one concatenation (a column gather, or slices, would scatter into zeros)
        self.block_sizes = [[mul * ir.dim for mul, ir in irreps] for irreps in irreps_list]
        self.order = [(index, number) for _, index, number, mul in blocks if mul]

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        if len(features) != len(self.irreps_in):
            raise ValueError(f"expected {len(self.irreps_in)} inputs, got {len(features)}")
        blocks = [x.split(sizes, dim=-1) for x, sizes in zip(features, self.block_sizes)]
        return torch.cat([blocks[index][number] for index, number in self.order], dim=-1)
