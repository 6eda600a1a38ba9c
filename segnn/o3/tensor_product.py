"""The attribute-conditioned Clebsch-Gordan tensor product: the one seam every layer calls.

``ConditionedTensorProduct`` maps features ``x`` (irreps ``irreps_in``) and a steerable attribute
``a`` (irreps ``irreps_attr``, e.g. spherical harmonics of an edge vector) to

    y_o = b_o + sum over paths (x-block u, a-block v) -> o of  W_p  CG(l_u, l_v, l_o) (x_u ⊗ a_v)

Every allowed path ``l_in ⊗ l_attr → l_out`` (``|l_in - l_attr| <= l_out <= l_in + l_attr`` and
parity conserved) gets a learned matrix over channels, shared by all rows (nodes or edges); the
bias ``b`` acts on ``0e`` outputs only, since a constant added to any other irrep would break
equivariance. Every linear map of a segnn model is one of these.

The weight layout is published, as e3nn publishes its instructions: :attr:`instructions` (one
:class:`Instruction` per path: blocks, attribute copy, path weight), :meth:`weight_views` (each
path's ``[mul_in, mul_out]`` weights) and ``bias_columns`` (the output columns the bias adds to).
That is all a backend evaluating the product another way may read (the e3nn reference, the
edge frame's effective weights); ``tests/test_backends.py`` checks it reproduces the product.

Normalisation follows e3nn's ``component``/``element`` convention: Clebsch-Gordan blocks of unit
Frobenius norm scaled by ``sqrt(d_out)``; ``fan_in`` counts the input channels (times paths)
reaching an output irrep. Two parameterisations of the weights represent the same functions
and start at a similar scale (uniform weights have a third of the unit-normal variance), but
train differently under Adam, whose steps have the same size in parameter space whatever the
parameters' scale:

* ``standard`` (``torch.nn.Linear``, the official SEGNN code): weights and scalar biases drawn
  from ``U(±1/sqrt(fan_in))`` and used as they are. Adam's steps of size ``lr`` are large
  relative to weights of scale ``1/sqrt(fan_in)``, so the paper's ``lr = 5e-4`` trains fast.
* ``normalized`` (e3nn): unit-normal weights scaled by ``1/sqrt(fan_in)`` in the forward pass
  and zero biases; the same ``lr`` moves the function ``sqrt(fan_in)`` times less per step.

The coefficients are kept in float64 and cast to the input's dtype on use, so a model moved
between float32 and float64 keeps exact coefficients.

Evaluation order. Channel mixing and Clebsch-Gordan coupling commute, so the weights go first,
where the matrices are wide (few large operations per irrep *type*, none per path):

1. *Mix* — for each input irrep type ``l_in`` (all its blocks, ``U`` channels), one matmul
   ``[rows * d_in, U] @ [U, C]`` applies the weights of every path leaving it at once
   (``C`` = Σ over paths of the output channels).
2. *Couple* — for each output irrep type ``l_out``, the attribute is contracted with the stacked
   Clebsch-Gordan blocks of every path reaching it, ``A = a @ G`` (``[rows, d_out, J]``,
   ``J`` = Σ paths × ``d_in``), and one batched matmul ``A @ B`` with the mixed features of
   those paths (``B [rows, J, W]``) gives every output block of that type.

Mixing before coupling keeps every matmul's output ``C`` wide: mixing after coupling would
end in ``[rows * d_out, R] @ [R, W]`` products with ``W`` as small as the number of ``l = 2``
channels, which run 5-10x below a CPU's matmul speed (``scripts/benchmark.py qm9``).
"""

from __future__ import annotations

import typing
from typing import Literal, NamedTuple

import torch
from e3nn import o3

from segnn.o3.irreps import concatenate

_SMALL_BATCHED_MATMUL = 400
"""Multiply-adds per matrix product below which ``torch.bmm`` on CPUs skips BLAS (ATen)."""


Parameterization = Literal["standard", "normalized"]
PARAMETERIZATIONS: tuple[str, ...] = typing.get_args(Parameterization)
SCALAR = o3.Irrep("0e")


def _initial_weight(shape: tuple[int, ...], fan_in: int | None) -> torch.Tensor:
    """Unit-normal (``fan_in`` None: the normalised parameterisation) or
    ``U(±1/sqrt(fan_in))`` (the standard one) initial values of ``shape``."""
    if fan_in is None:
        return torch.randn(shape)
    bound = fan_in**-0.5
    return torch.empty(shape).uniform_(-bound, bound)


class Instruction(NamedTuple):
    """One path of a :class:`ConditionedTensorProduct`, the published weight layout:

        y[output][:, w, :] += path_weight * Σ_u,i,j,k W[u, w] C[i, j, k] x[input][:, u, i] a[v, j]

    with ``W`` = ``weight_views()[n]`` (``[mul_in, mul_out]``), ``C`` e3nn's
    ``wigner_3j(l_input, l_attribute, l_output)``, ``x[input]`` the input block viewed
    ``[rows, mul, 2l + 1]`` and ``a[v]`` the attribute block's copy ``copy`` (``2l + 1`` columns
    from ``irreps_attr.slices()[attribute].start + copy * (2l + 1)``). Indices are blocks of
    ``irreps_in``, ``irreps_attr`` and ``irreps_out``."""

    input: int
    attribute: int
    copy: int
    output: int
    path_weight: float


class PathGroup(NamedTuple):
    """All paths from one input block to one output block (one per attribute copy coupling them);
    its weight is ``[mul_in * num_paths, mul_out]``, rows ordered (input channel, path)."""

    block_in: int
    block_out: int
    mul_in: int
    mul_out: int
    num_paths: int


class _Blocks(NamedTuple):
    """The blocks of one irrep type: its degree, parity and dimension, the blocks' indices and
    multiplicities (plain ints: the forward pass reads no e3nn objects)."""

    l: int
    parity: int
    dim: int
    indices: list[int]
    muls: list[int]


def _blocks_by_type(irreps: o3.Irreps) -> list[_Blocks]:
    types: dict[o3.Irrep, _Blocks] = {}
    for index, (mul, ir) in enumerate(irreps):
        if mul > 0:
            blocks = types.setdefault(ir, _Blocks(ir.l, ir.p, ir.dim, [], []))
            blocks.indices.append(index)
            blocks.muls.append(mul)
    return list(types.values())


class _Slot(NamedTuple):
    """One copy of an attribute irrep: its block, which copy, its first column, the irrep."""

    block: int
    copy: int
    first: int
    irrep: o3.Irrep


def _attribute_slots(
    irreps_attr: o3.Irreps, blocks_in: _Blocks, blocks_out: _Blocks
) -> list[_Slot]:
    """Every attribute copy coupling the two irrep types: the paths between them."""
    ir_in = o3.Irrep(blocks_in.l, blocks_in.parity)
    ir_out = o3.Irrep(blocks_out.l, blocks_out.parity)
    return [
        _Slot(block, copy, columns.start + copy * ir_attr.dim, ir_attr)
        for block, ((mul, ir_attr), columns) in enumerate(zip(irreps_attr, irreps_attr.slices()))
        if ir_out in ir_in * ir_attr
        for copy in range(mul)
    ]


class ConditionedTensorProduct(torch.nn.Module):
    """``y = W (x ⊗ a) + b`` with weights shared over rows and bias on scalars.

    Args:
        irreps_in: irreps of the features ``x``.
        irreps_attr: irreps of the conditioning attribute ``a``.
        irreps_out: irreps of the result. Output irreps that no path reaches stay zero
            (plus their bias if they are ``0e``).
        parameterization: ``standard`` or ``normalized`` weights (see the module docstring).

    Shapes: ``x [N, irreps_in.dim]``, ``a [N, irreps_attr.dim]`` → ``y [N, irreps_out.dim]``.

    Parameters: one weight matrix ``[mul_in * num_paths, mul_out]`` per :class:`PathGroup`
    (rows ordered by input channel, then path), and the scalar bias on ``bias_columns``; read
    them through :attr:`instructions` and :meth:`weight_views` (the published layout).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_attr: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        parameterization: Parameterization = "normalized",
    ):
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, "
                f"got {parameterization!r}"
            )
        self.parameterization = parameterization
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_attr = o3.Irreps(irreps_attr)
        self.irreps_out = o3.Irreps(irreps_out)
        self.in_dim, self.attr_dim, self.out_dim = (
            self.irreps_in.dim,
            self.irreps_attr.dim,
            self.irreps_out.dim,
        )
        self.input_types = _blocks_by_type(self.irreps_in)
        self.output_types = [
            out
            for out in _blocks_by_type(self.irreps_out)
            if any(_attribute_slots(self.irreps_attr, i, out) for i in self.input_types)
        ]
        # _slots[i][o]: the paths from input type i to (reachable) output type o
        self._slots = [
            [_attribute_slots(self.irreps_attr, inputs, out) for out in self.output_types]
            for inputs in self.input_types
        ]
        self._paths = [[len(slots) for slots in row] for row in self._slots]  # how many
        self._groups = [
            PathGroup(block_in, block_out, mul_in, mul_out, self._paths[i][o])
            for o, out in enumerate(self.output_types)
            for block_out, mul_out in zip(out.indices, out.muls)
            for i, inputs in enumerate(self.input_types)
            if self._paths[i][o]
            for block_in, mul_in in zip(inputs.indices, inputs.muls)
        ]
        self._groups.sort(key=lambda group: (group.block_out, group.block_in))
        self._group_index = {(g.block_in, g.block_out): k for k, g in enumerate(self._groups)}
        self.num_paths = sum(group.num_paths for group in self._groups)
        # per reachable output type: how many input channels (times paths) reach it
        self._fan_in = [
            sum(sum(i.muls) * p[o] for i, p in zip(self.input_types, self._paths))
            for o in range(len(self.output_types))
        ]
        standard = parameterization == "standard"
        self._output_scales = [
            (out.dim / (1 if standard else fan_in)) ** 0.5
            for out, fan_in in zip(self.output_types, self._fan_in)
        ]
        # output block index -> its (reachable) output type
        self._output_type = {b: o for o, out in enumerate(self.output_types) for b in out.indices}
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(
                _initial_weight(
                    (group.mul_in * group.num_paths, group.mul_out),
                    self._fan_in[self._output_type[group.block_out]] if standard else None,
                )
            )
            for group in self._groups
        )
        self._couplings = [self._coupling(o) for o in range(len(self.output_types))]
        # per output type, the width of each input type's share of J (see _coupling)
        self._coupling_widths = [
            [inputs.dim * paths[o] for inputs, paths in zip(self.input_types, self._paths)]
            for o in range(len(self.output_types))
        ]
        # PyTorch's CPU batched matmul falls back to a plain loop, several times slower than
        # BLAS, for products of fewer than 400 multiply-adds per row ([d_out, J] @ [J, W]): on
        # CPUs the coupling of a small vector output pads J with zeros up to that size
        self._cpu_padding = [
            max(
                0,
                -(-_SMALL_BATCHED_MATMUL // (out.dim * sum(out.muls)))
                - sum(self._coupling_widths[o]),
            )
            if out.dim > 1
            else 0
            for o, out in enumerate(self.output_types)
        ]
        self._in_widths = [mul * ir.dim for mul, ir in self.irreps_in]
        self._out_widths = [mul * ir.dim for mul, ir in self.irreps_out]
        self._scalar_outputs = [o for o, out in enumerate(self.output_types) if out.dim == 1]
        self._vector_outputs = [o for o, out in enumerate(self.output_types) if out.dim > 1]

        bias_columns = [
            column
            for (_, ir), columns in zip(self.irreps_out, self.irreps_out.slices())
            if ir == SCALAR
            for column in range(columns.start, columns.stop)
        ]
        self.register_buffer(
            "bias_columns", torch.tensor(bias_columns, dtype=torch.long), persistent=False
        )
        self.bias = torch.nn.Parameter(torch.zeros(len(bias_columns)))
        if standard:  # U(±1/sqrt(fan_in)) on the scalars a path reaches, as torch.nn.Linear
            with torch.no_grad():
                biases = self.bias.split([mul for mul, ir in self.irreps_out if ir == SCALAR])
                blocks = [index for index, (_, ir) in enumerate(self.irreps_out) if ir == SCALAR]
                for index, bias in zip(blocks, biases):
                    if index in self._output_type:
                        fan_in = self._fan_in[self._output_type[index]]
                        bias.copy_(_initial_weight(bias.shape, fan_in))
        self._cg_cache: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        type_of_input = {b: i for i, t in enumerate(self.input_types) for b in t.indices}
        self.instructions = [
            Instruction(
                group.block_in,
                slot.block,
                slot.copy,
                group.block_out,
                self._output_scales[self._output_type[group.block_out]],
            )
            for group in self._groups
            for slot in self._slots[type_of_input[group.block_in]][
                self._output_type[group.block_out]
            ]
        ]
        self.weight_numel = sum(weight.numel() for weight in self.weights)

    def flat_weights(self) -> torch.Tensor:
        """Every weight in one vector ``[weight_numel]``, the layout :meth:`weight_views` reads."""
        return concatenate([weight.reshape(-1) for weight in self.weights], dim=0)

    def weight_views(self, flat: torch.Tensor | None = None) -> list[torch.Tensor]:
        """One ``[mul_in, mul_out]`` view per :attr:`instructions` entry, in that order, into
        ``flat`` (``[weight_numel]``, laid out as :meth:`flat_weights`; default: the product's
        own weights). Views of ``torch.arange(weight_numel)`` locate every weight."""
        groups = (
            self.weights
            if flat is None
            else flat.split([weight.numel() for weight in self.weights])
        )
        views = []
        for group, weight in zip(self._groups, groups):
            per_path = weight.view(group.mul_in, group.num_paths, group.mul_out)
            views += [per_path[:, path, :] for path in range(group.num_paths)]
        return views

    def _coupling(self, o: int) -> torch.Tensor:
        """``G [attr_dim, d_out * J]`` (float64) for output type ``o``: ``(a @ G)`` viewed
        ``[rows, d_out, J]`` couples the mixed features of every path reaching ``o``, with
        ``J`` ordered (input type, input component, path) as :meth:`forward` lays them out."""
        d_out = self.output_types[o].dim
        blocks = []
        for inputs, slots in zip(self.input_types, self._slots):
            block = torch.zeros(
                self.attr_dim, d_out, inputs.dim, len(slots[o]), dtype=torch.float64
            )
            for path, (_, _, first, ir_attr) in enumerate(slots[o]):
                cg = o3.wigner_3j(inputs.l, ir_attr.l, self.output_types[o].l, dtype=torch.float64)
                block[first : first + ir_attr.dim, :, :, path] = cg.permute(1, 2, 0)
            blocks.append(block.flatten(2))
        return torch.cat(blocks, dim=2).reshape(self.attr_dim, -1)

    def _coefficients(self, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
        key = (dtype, device)
        if key not in self._cg_cache:
            couplings = [c.to(device=device, dtype=dtype) for c in self._couplings]
            if device.type == "cpu":
                couplings = [
                    torch.nn.functional.pad(
                        c.view(self.attr_dim, out.dim, -1), (0, padding)
                    ).reshape(self.attr_dim, -1)
                    if padding
                    else c
                    for c, out, padding in zip(couplings, self.output_types, self._cpu_padding)
                ]
            self._cg_cache[key] = couplings
        return self._cg_cache[key]

    def _path_weights(self, i: int, o: int) -> torch.Tensor:
        """``[U, paths, W]``: the scaled weights of every path from input type ``i`` (channels
        block after block) to output type ``o`` (channels block after block)."""
        inputs, out, paths = self.input_types[i], self.output_types[o], self._paths[i][o]
        weight = concatenate(
            [
                concatenate(
                    [
                        self.weights[self._group_index[block_in, block_out]].view(
                            mul_in, paths, mul_out
                        )
                        for block_out, mul_out in zip(out.indices, out.muls)
                    ],
                    dim=2,
                )
                for block_in, mul_in in zip(inputs.indices, inputs.muls)
            ],
            dim=0,
        )
        return weight * self._output_scales[o]

    def forward(self, x: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dim or attr.shape[-1] != self.attr_dim:
            raise ValueError(
                f"tensor product {self.extra_repr()} got features of width {x.shape[-1]} "
                f"and attributes of width {attr.shape[-1]}"
            )
        rows = x.shape[0]
        # split, not sliced: a slice's backward writes into a zero-filled copy of all of x
        blocks_in = x.split(self._in_widths, dim=1)
        features = [  # per input type: [rows, d_in, U]
            concatenate(
                [
                    blocks_in[block].view(rows, mul, inputs.dim).transpose(1, 2)
                    for block, mul in zip(inputs.indices, inputs.muls)
                ],
                dim=2,
            ).contiguous()  # one copy when a type has one block; several matmuls read it
            for inputs in self.input_types
        ]
        couplings = self._coefficients(x.dtype, x.device)
        blocks: dict[int, torch.Tensor] = {}
        for o in self._scalar_outputs:
            blocks.update(self._scalar_output(o, features, attr @ couplings[o]))
        blocks.update(self._vector_outputs_weights_first(features, attr, couplings))
        y = concatenate(
            [
                blocks[block] if block in blocks else x.new_zeros(rows, width)
                for block, width in enumerate(self._out_widths)
            ],
            dim=-1,
        )
        if self.bias.numel() == 0:
            return y
        return y + self.bias.new_zeros(self.out_dim).index_copy(0, self.bias_columns, self.bias)

    def prepare(self, dtype: torch.dtype, device: torch.device) -> None:
        """Fill the coefficient cache for ``dtype`` on ``device`` now: code compiled with a cache
        still empty would compile again."""
        self._coefficients(dtype, device)

    def _scalar_output(
        self, o: int, features: list[torch.Tensor], conditioned: torch.Tensor
    ) -> dict[int, torch.Tensor]:
        """Output type ``o`` of dimension 1, coupling first: the coupling is a dot product over
        the input components (``[rows, paths, U]`` per input type, elementwise), then one
        matmul with all the paths' weights stacked, ``[rows, R] @ [R, W]``, ``W`` wide (the
        scalars and the gates). ``conditioned``: ``[rows, J]``, J ordered as :meth:`_coupling`."""
        rows, coupled, weights = conditioned.shape[0], [], []
        for i, (feature, j) in enumerate(
            zip(features, conditioned.split(self._coupling_widths[o], 1))
        ):
            paths = self._paths[i][o]
            if paths:
                a = j.view(rows, self.input_types[i].dim, paths, 1)
                coupled.append((a * feature.unsqueeze(2)).sum(1).flatten(1))
                weights.append(self._path_weights(i, o).transpose(0, 1).flatten(0, 1))
        result = concatenate(coupled, dim=1) @ concatenate(weights, dim=0)  # [rows, W]
        out = self.output_types[o]
        return dict(zip(out.indices, result.split(out.muls, dim=1)))

    def _vector_outputs_weights_first(
        self, features: list[torch.Tensor], attr: torch.Tensor, couplings: list[torch.Tensor]
    ) -> dict[int, torch.Tensor]:
        """Every output type of dimension > 1, weights first: per pair of input and output
        type one matmul over the paths between them (``[rows, d_in, paths * W]``, which is
        already ``[rows, d_in * paths, W]`` in memory), stacked over the input types
        (``[rows, J, W]``); then one batched matmul of ``a @ G`` (``[rows, d_out, J]``) with it."""
        rows, blocks = attr.shape[0], {}
        for o in self._vector_outputs:
            out = self.output_types[o]
            width = sum(out.muls)
            mixed = [
                (feature @ self._path_weights(i, o).flatten(1)).view(rows, j_width, width)
                for i, (feature, j_width) in enumerate(zip(features, self._coupling_widths[o]))
                if j_width
            ]
            padding = self._cpu_padding[o] if attr.device.type == "cpu" else 0
            if padding:  # zero rows against the coupling's zero columns (see __init__)
                mixed.append(attr.new_zeros(rows, padding, width))
            stacked = concatenate(mixed, dim=1)
            conditioned = (attr @ couplings[o]).view(rows, out.dim, stacked.shape[1])
            result = torch.bmm(conditioned, stacked).transpose(1, 2)  # [rows, W, d_out]
            for block, part in zip(out.indices, result.split(out.muls, dim=1)):
                blocks[block] = part.reshape(rows, part.shape[1] * out.dim)
        return blocks

    def extra_repr(self) -> str:
        return f"{self.irreps_in} ⊗ {self.irreps_attr} → {self.irreps_out}, {self.num_paths} paths"
