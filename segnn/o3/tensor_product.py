"""The attribute-conditioned Clebsch-Gordan tensor product: the one seam every layer calls.

``ConditionedTensorProduct`` maps features ``x`` (irreps ``irreps_in``) and a steerable attribute
``a`` (irreps ``irreps_attr``, e.g. spherical harmonics of an edge vector) to

    y_o = b_o + sum over paths (x-block u, a-block v) -> o of  W_p  CG(l_u, l_v, l_o) (x_u ⊗ a_v)

Every allowed path ``l_in ⊗ l_attr → l_out`` (``|l_in - l_attr| <= l_out <= l_in + l_attr`` and
parity conserved) gets a learned matrix over channels, shared by all rows (nodes or edges); the
bias ``b`` acts on ``0e`` outputs only, since a constant added to any other irrep would break
equivariance. Every linear map of a segnn model is one of these, so a faster backend replaces
the body of this class and nothing else.

Normalisation follows e3nn's ``component``/``element`` convention: Clebsch-Gordan blocks of unit
Frobenius norm scaled by ``sqrt(d_out / fan_in)`` where ``fan_in`` counts the input channels
reaching an output irrep, and unit-normal weights, so unit-variance inputs give unit-variance
outputs at initialisation. The coefficients are kept in float64 and cast to the input's dtype
on use, so a model moved between float32 and float64 keeps exact coefficients.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from e3nn import o3


class PathGroup(NamedTuple):
    """All paths from one input block to one output block (one per attribute copy coupling them)."""

    block_in: int
    block_out: int
    start: int  # first column of the input block
    mul_in: int
    dim_in: int
    mul_out: int
    dim_out: int
    num_paths: int


def _path_groups(
    irreps_in: o3.Irreps, irreps_attr: o3.Irreps, irreps_out: o3.Irreps
) -> list[tuple[PathGroup, torch.Tensor]]:
    """Each group with its stacked float64 CG tensor ``[dim_in, attr.dim, num_paths * dim_out]``."""
    groups = []
    for block_out, (mul_out, ir_out) in enumerate(irreps_out):
        for block_in, ((mul_in, ir_in), columns) in enumerate(zip(irreps_in, irreps_in.slices())):
            if mul_in == 0 or mul_out == 0:
                continue
            slots = []
            for (mul_attr, ir_attr), attr_columns in zip(irreps_attr, irreps_attr.slices()):
                if ir_out not in ir_in * ir_attr:
                    continue
                coefficients = o3.wigner_3j(ir_in.l, ir_attr.l, ir_out.l, dtype=torch.float64)
                for copy in range(mul_attr):
                    slot = torch.zeros(ir_in.dim, irreps_attr.dim, ir_out.dim, dtype=torch.float64)
                    first = attr_columns.start + copy * ir_attr.dim
                    slot[:, first : first + ir_attr.dim] = coefficients
                    slots.append(slot)
            if slots:
                group = PathGroup(
                    block_in,
                    block_out,
                    columns.start,
                    mul_in,
                    ir_in.dim,
                    mul_out,
                    ir_out.dim,
                    len(slots),
                )
                groups.append((group, torch.cat(slots, dim=2)))
    return groups


class ConditionedTensorProduct(torch.nn.Module):
    """``y = W (x ⊗ a) + b`` with weights shared over rows and bias on scalars.

    Args:
        irreps_in: irreps of the features ``x``.
        irreps_attr: irreps of the conditioning attribute ``a``.
        irreps_out: irreps of the result. Output irreps that no path reaches stay zero
            (plus their bias if they are ``0e``).

    Shapes: ``x [N, irreps_in.dim]``, ``a [N, irreps_attr.dim]`` → ``y [N, irreps_out.dim]``.

    Parameters: one weight matrix ``[mul_in * num_paths, mul_out]`` per :class:`PathGroup`
    (rows ordered by input channel, then path), and the scalar bias.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_attr: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
    ):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_attr = o3.Irreps(irreps_attr)
        self.irreps_out = o3.Irreps(irreps_out)
        self.in_dim, self.attr_dim, self.out_dim = (
            self.irreps_in.dim,
            self.irreps_attr.dim,
            self.irreps_out.dim,
        )

        groups = _path_groups(self.irreps_in, self.irreps_attr, self.irreps_out)
        self.groups = [group for group, _ in groups]
        self._cg64 = [cg for _, cg in groups]
        self.num_paths = sum(group.num_paths for group in self.groups)
        fan_in = [0] * len(self.irreps_out)
        for group in self.groups:
            fan_in[group.block_out] += group.mul_in * group.num_paths
        self._scales = [(group.dim_out / fan_in[group.block_out]) ** 0.5 for group in self.groups]
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(group.mul_in * group.num_paths, group.mul_out))
            for group in self.groups
        )

        scalar_index = [
            column
            for (_, ir), columns in zip(self.irreps_out, self.irreps_out.slices())
            if ir == o3.Irrep("0e")
            for column in range(columns.start, columns.stop)
        ]
        self.register_buffer(
            "scalar_index", torch.tensor(scalar_index, dtype=torch.long), persistent=False
        )
        self.bias = torch.nn.Parameter(torch.zeros(len(scalar_index)))
        self._cg_cache: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        self.reference = None  # set by segnn.o3.reference.use_reference_tensor_products

    def _coefficients(self, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
        key = (dtype, device)
        if key not in self._cg_cache:
            self._cg_cache[key] = [cg.to(device=device, dtype=dtype) for cg in self._cg64]
        return self._cg_cache[key]

    def forward(self, x: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dim or attr.shape[-1] != self.attr_dim:
            raise ValueError(
                f"tensor product {self.extra_repr()} got features of width {x.shape[-1]} "
                f"and attributes of width {attr.shape[-1]}"
            )
        if self.reference is not None:
            return self.reference(x, attr)
        rows = x.shape[0]
        outputs: list[torch.Tensor | None] = [None] * len(self.irreps_out)
        coefficients = self._coefficients(x.dtype, x.device)
        for group, cg, weight, scale in zip(self.groups, coefficients, self.weights, self._scales):
            block = x[:, group.start : group.start + group.mul_in * group.dim_in]
            conditioned = torch.einsum("nj,ijk->nik", attr, cg)  # [rows, dim_in, paths * dim_out]
            coupled = torch.bmm(block.reshape(rows, group.mul_in, group.dim_in), conditioned)
            # [rows, mul_in * paths, dim_out]: rows ordered (channel, path) like the weight's rows
            coupled = coupled.reshape(rows, group.mul_in * group.num_paths, group.dim_out)
            mixed = torch.einsum("nuk,uw->nwk", coupled, weight * scale)
            mixed = mixed.reshape(rows, group.mul_out * group.dim_out)
            previous = outputs[group.block_out]
            outputs[group.block_out] = mixed if previous is None else previous + mixed
        y = torch.cat(
            [
                x.new_zeros(rows, mul * ir.dim) if out is None else out
                for out, (mul, ir) in zip(outputs, self.irreps_out)
            ],
            dim=-1,
        )
        if self.bias.numel() == 0:
            return y
        return y + self.bias.new_zeros(self.out_dim).index_copy(0, self.scalar_index, self.bias)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} ⊗ {self.irreps_attr} → {self.irreps_out}, {self.num_paths} paths"
