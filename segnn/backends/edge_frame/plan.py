"""A conditioned product's weights as the effective matrices of the edge frame.

In an edge's frame the attribute is ``Y(ŷ)``, nonzero only at ``m = 0`` of each degree, and every
path couples input component ``m`` to output component ``m`` with one coefficient shared by
``±m`` (:mod:`segnn.backends.edge_frame.frames`). So the product is one matrix ``W_eff(k)`` per
``|m| = k``, the sum over paths of their weights times that coefficient. :class:`FramePlan`
reads the product's published layout (``instructions``, ``weight_views``, ``bias_columns``) and
nothing else.
"""

from __future__ import annotations

import torch
from e3nn import o3

from segnn.backends.edge_frame.frames import FrameLayout
from segnn.o3 import ConditionedTensorProduct, spherical_harmonics_irreps


def _block_offsets(irreps: o3.Irreps, k: int) -> dict[int, int]:
    """First channel of each block of degree ``>= k`` among the channels at ``|m| = k``."""
    offsets, position = {}, 0
    for index, (mul, ir) in enumerate(irreps):
        if ir.l >= k:
            offsets[index] = position
            position += mul
    return offsets


class FramePlan:
    """Where every weight of a :class:`~segnn.o3.ConditionedTensorProduct` lands in the
    effective matrices ``W_eff(k)`` of the edge frame, and with which coefficient.

    ``W_eff`` of all ``|m| = k`` lives in one flat vector (``sizes`` per ``k``, shapes
    ``[K_k, N_k]``: ``m = -k`` and ``+k`` share their coefficients); it is
    ``index_add(target, flat_weights[source] * coefficient)``. ``bias_columns``: the columns of
    part 0 that hold the bias's outputs.
    """

    def __init__(self, product: ConditionedTensorProduct):
        irreps_attr = product.irreps_attr
        if irreps_attr != spherical_harmonics_irreps(irreps_attr.lmax):
            raise ValueError(
                f"the edge frame needs spherical-harmonic attributes 0e + 1o + ..., got {irreps_attr}"
            )
        y_axis = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
        attribute = o3.spherical_harmonics(
            list(range(irreps_attr.lmax + 1)), y_axis, normalize=True, normalization="component"
        ).split([ir.dim for _, ir in irreps_attr])
        layout_in, layout_out = FrameLayout(product.irreps_in), FrameLayout(product.irreps_out)
        self.shapes = [
            (layout_in.widths[k] if k <= layout_in.lmax else 0, layout_out.widths[k])
            for k in range(layout_out.lmax + 1)
        ]
        self.sizes = [rows * cols for rows, cols in self.shapes]
        part_offsets = [sum(self.sizes[:k]) for k in range(len(self.shapes))]
        index_views = product.weight_views(torch.arange(product.weight_numel))
        sources, targets, coefficients = [], [], []
        for path, index in zip(product.instructions, index_views):
            l_in = product.irreps_in[path.input].ir.l
            l_attr = irreps_attr[path.attribute].ir.l
            l_out = product.irreps_out[path.output].ir.l
            cg = o3.wigner_3j(l_in, l_attr, l_out, dtype=torch.float64)
            block = torch.einsum("ijk,j->ki", cg, attribute[path.attribute]) * path.path_weight
            diagonal = torch.zeros_like(block)
            for m in range(-min(l_in, l_out), min(l_in, l_out) + 1):
                diagonal[l_out + m, l_in + m] = block[l_out + m, l_in + m]
            if (block - diagonal).abs().max() > 1e-12:
                raise ValueError(
                    f"path {l_in} -> {l_out} is not diagonal in m in the edge frame "
                    "(a parity-violating path?); use the ordinary product"
                )
            for k in range(min(l_in, l_out) + 1):
                coefficient = float(block[l_out + k, l_in + k])
                if abs(coefficient - float(block[l_out - k, l_in - k])) > 1e-12:
                    raise ValueError(f"path {l_in} -> {l_out} couples m = ±{k} differently")
                if abs(coefficient) < 1e-14:
                    continue
                rows = _block_offsets(product.irreps_in, k)[path.input] + torch.arange(
                    index.shape[0]
                )
                cols = _block_offsets(product.irreps_out, k)[path.output] + torch.arange(
                    index.shape[1]
                )
                target = part_offsets[k] + rows[:, None] * self.shapes[k][1] + cols[None, :]
                sources.append(index.flatten())
                targets.append(target.flatten())
                coefficients.append(torch.full((index.numel(),), coefficient, dtype=torch.float64))
        self.source = torch.cat(sources) if sources else torch.zeros(0, dtype=torch.long)
        self.target = torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long)
        self.coefficient = (
            torch.cat(coefficients) if coefficients else torch.zeros(0, dtype=torch.float64)
        )
        self.size = sum(self.sizes)
        # bias_columns are columns of the flat output; in part 0 the channels come block by
        # block, one column per channel
        flat_to_part0 = {}
        part0 = _block_offsets(product.irreps_out, 0)
        for index, ((mul, ir), columns) in enumerate(
            zip(product.irreps_out, product.irreps_out.slices())
        ):
            for channel in range(mul):
                flat_to_part0[columns.start + channel * ir.dim] = part0[index] + channel
        self.bias_columns = torch.tensor(
            [flat_to_part0[int(column)] for column in product.bias_columns], dtype=torch.long
        )
        self._cache: dict = {}

    def tensors(self, dtype: torch.dtype, device: torch.device):
        """``(source, target, coefficient, bias_columns)`` on ``device``."""
        key = (dtype, device)
        if key not in self._cache:
            self._cache[key] = (
                self.source.to(device),
                self.target.to(device),
                self.coefficient.to(device=device, dtype=dtype),
                self.bias_columns.to(device),
            )
        return self._cache[key]

    def effective_weights(self, flat_weights: torch.Tensor) -> list[torch.Tensor]:
        """``W_eff`` per ``|m|``, ``[K_k, N_k]`` (the same for ``m = -k`` and ``+k``), from the
        product's :meth:`~segnn.o3.ConditionedTensorProduct.flat_weights`."""
        source, target, coefficient, _ = self.tensors(flat_weights.dtype, flat_weights.device)
        flat = flat_weights.new_zeros(self.size).index_add(
            0, target, flat_weights.index_select(0, source) * coefficient
        )
        return [part.view(shape) for part, shape in zip(flat.split(self.sizes), self.shapes)]
