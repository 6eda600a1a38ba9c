"""Message products in the edge frame: rotate each edge onto the y axis, where its harmonics
have a single nonzero component.

A message product conditioned on ``a = Y(r̂)`` is equivariant, so with a rotation ``R`` that
takes ``r̂`` to ``ŷ``, ``TP(x, Y(r̂)) = D(R)^T TP(D(R) x, Y(ŷ))``. In e3nn's basis ``Y^l(ŷ)`` is
zero except for its ``m = 0`` component, and for the parity-conserving paths of steerable
features the coupling with that component is diagonal in ``m``: output component ``m`` only
sees input component ``m``. So in the frame the product falls apart by ``|m|``:

    y'_m = x'_m @ W_eff(m)        (one matmul per |m| = 0 .. lmax; ±m stacked)

where ``W_eff(m)`` sums, for every pair of input and output blocks, the weights of all paths
between them (one per attribute degree) scaled by their Clebsch-Gordan value at ``m``. The
attribute degrees collapse into one weight matrix, and the per-edge work is a few dense
matmuls plus the rotations (the eSCN trick, Passaro & Zitnick 2023). The result equals the
ordinary product to rounding; the weights are the same parameters.

Features in the frame are stored by ``|m|`` (:class:`FrameLayout`): part 0 is ``[rows, K_0]``
with the ``m = 0`` component of every channel; part ``k >= 1`` is ``[2, rows, K_k]`` with the
``m = -k`` and ``m = +k`` components of every channel of degree ``>= k``; channels keep the order
of the irreps (block after block). The sign comes first: copies into ``[2, rows, K]`` move
long rows, into ``[rows, 2, K]`` short pieces (slower on CPUs). The rotations
(:func:`frame_rotations`) list their rows in frame order (``m = 0, -1, +1, -2, +2, ...``), so a
rotated block splits into the parts without reordering.

The rotation is a function of the edge direction that jumps where the direction crosses the
``xz`` plane (no smooth choice exists on the whole sphere); the product does not depend on the
choice. Each of the two formulas is exact on an open set of directions containing its own, so
derivatives through the rotation are those of the ordinary product too: forces ``-dE/dx`` and
their parameter gradients (force training differentiates twice) equal the ordinary path's to
rounding, also for bonds along ``±y`` and in the ``xz`` plane (``tests/test_backends.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from e3nn import o3

from segnn.o3.irreps import IrrepsConcat, concatenate


def _isometry(l: int) -> torch.Tensor:
    return (2 * l + 1) ** 0.5 * o3.wigner_3j(l - 1, 1, l, dtype=torch.float64).reshape(
        (2 * l - 1) * 3, 2 * l + 1
    )


PRECOMPUTED_DEGREES = 6
_COUPLINGS = {l: _isometry(l) for l in range(2, PRECOMPUTED_DEGREES + 1)}


def rotation_coupling(l: int) -> torch.Tensor:
    """``Q [(2l - 1) * 3, 2l + 1]`` (float64): the isometric Clebsch-Gordan map
    ``l → (l - 1) ⊗ 1``. Degrees up to :data:`PRECOMPUTED_DEGREES` are computed at import, so
    compiled code reads a constant instead of tracing e3nn's coefficient code."""
    if l not in _COUPLINGS:
        _COUPLINGS[l] = _isometry(l)
    return _COUPLINGS[l]


def edge_rotations(edge_vectors: torch.Tensor, lmax: int) -> list[torch.Tensor]:
    """``D^l(R_e)`` for ``l = 1 .. lmax``, each ``[E, 2l+1, 2l+1]``, with ``R_e r̂_e = ŷ``.

    ``D^1`` is ``R`` itself (e3nn's ``1o`` basis is x, y, z); higher degrees follow by
    coupling, ``D^l = Q^T (D^{l-1} ⊗ D^1) Q`` with ``Q`` the isometric Clebsch-Gordan map
    ``l → (l - 1) ⊗ 1``. Entry ``0`` of the list is ``D^1``.
    """
    direction = edge_vectors / edge_vectors.norm(dim=-1, keepdim=True)
    # Rodrigues' formula R = I + K + K² / (1 + cos) for the axis r̂ × ŷ, K its cross-product
    # matrix, is exact where cos = r̂·ŷ >= 0; a direction with cos < 0 is first turned by π
    # about x, R = R'(F r̂) F with F = diag(1, -1, -1), so 1 + cos never falls below 1.
    flip = torch.tensor([1.0, -1.0, -1.0], dtype=edge_vectors.dtype, device=edge_vectors.device)
    lower = direction[:, 1] < 0
    x, y, z = torch.where(lower[:, None], direction * flip, direction).unbind(-1)
    zero = torch.zeros_like(x)
    cross = torch.stack(
        [
            torch.stack([zero, -x, zero], -1),
            torch.stack([x, zero, z], -1),
            torch.stack([zero, -z, zero], -1),
        ],
        dim=-2,
    )
    eye = torch.eye(3, dtype=edge_vectors.dtype, device=edge_vectors.device)
    rotation = eye + cross + cross @ cross / (1.0 + y)[:, None, None]
    rotation = torch.where(lower[:, None, None], rotation * flip, rotation)
    rotations = [rotation]
    for l in range(2, lmax + 1):
        coupling = rotation_coupling(l).to(dtype=edge_vectors.dtype, device=edge_vectors.device)
        previous = rotations[-1]
        product = torch.einsum("eab,ecd->eacbd", previous, rotation).reshape(
            len(rotation), (2 * l - 1) * 3, (2 * l - 1) * 3
        )
        rotations.append(coupling.T @ product @ coupling)
    return rotations


def frame_order(l: int) -> list[int]:
    """The components of degree ``l`` in *frame order*, ``m = 0, -1, +1, -2, +2, ...``, as
    indices ``l + m`` into e3nn's order: the ``|m| = k`` pair is rows ``2k - 1, 2k``."""
    return [l] + [l + sign * k for k in range(1, l + 1) for sign in (-1, 1)]


def frame_rotations(edge_vectors: torch.Tensor, lmax: int) -> list[torch.Tensor]:
    """:func:`edge_rotations` with the rows of each ``D^l`` in :func:`frame_order`: ``D^l x``
    then comes out grouped by ``|m|``. ``[E, 2l+1, 2l+1]`` for ``l = 2 .. lmax``; ``D^1`` has
    one extra zero row, ``[E, 4, 3]``: PyTorch's CPU batched matmul runs a plain loop instead of
    BLAS below 400 multiply-adds per matrix product (``3x3 @ 3x36`` is 324, ``4x3 @ 3x36``
    432). What
    :class:`FrameLayout` and :class:`FrameConcat` take."""
    framed = [
        rotation[:, frame_order(l)]
        for l, rotation in enumerate(edge_rotations(edge_vectors, lmax), start=1)
    ]
    framed[0] = torch.nn.functional.pad(framed[0], (0, 0, 0, 1))
    return framed


def _frame_parts(
    blocks: Iterable[tuple[torch.Tensor, int, int]], rotations: list[torch.Tensor], lmax: int
) -> list[torch.Tensor]:
    """Blocks ``(x [rows, mul * (2l+1)], mul, l)`` in column order → their parts by ``|m|``
    after the rotation: one batched matmul per block, one concatenation per part."""
    pieces: list[list[torch.Tensor]] = [[] for _ in range(lmax + 1)]
    for block, mul, l in blocks:
        if l == 0:
            pieces[0].append(block)
            continue
        # D [rows, d, d] @ block^T [rows, d, mul]: component-major per edge, which batched
        # matmul runs ~1.5x faster than block @ D^T here (4x3 and 5x5 matrices per edge);
        # the rows come out in frame order, m = 0 first, then the pairs ±k
        rotation = rotations[l - 1]
        rotated = rotation @ block.view(block.shape[0], mul, 2 * l + 1).transpose(1, 2)
        padding = [rotation.shape[1] - 2 * l - 1] if rotation.shape[1] > 2 * l + 1 else []
        # viewed [d, rows, mul]: the pairs come out [2, rows, mul] without a copy
        zero, *pairs = rotated.transpose(0, 1).split([1] + [2] * l + padding, dim=0)
        pieces[0].append(zero.squeeze(0))
        for k, pair in enumerate(pairs[:l], start=1):
            pieces[k].append(pair)
    return [concatenate(part, dim=-1) for part in pieces]


class FrameLayout:
    """Column bookkeeping for features of ``irreps`` stored by ``|m|`` (see module docstring).

    ``widths[k]``: channels with a component at ``|m| = k``; ``block_widths[k]``: their
    multiplicities block by block. ``rotations`` are :func:`frame_rotations`.
    """

    def __init__(self, irreps: o3.Irreps | str):
        self.irreps = o3.Irreps(irreps)
        self.lmax = self.irreps.lmax if len(self.irreps) else 0
        self.block_widths = [
            [mul for mul, ir in self.irreps if ir.l >= k] for k in range(self.lmax + 1)
        ]
        self.widths = [sum(widths) for widths in self.block_widths]
        self._flat_widths = [mul * ir.dim for mul, ir in self.irreps]
        self.blocks = [(mul, ir.l) for mul, ir in self.irreps]  # plain ints for the hot path

    def to_frame(self, x: torch.Tensor, rotations: list[torch.Tensor]) -> list[torch.Tensor]:
        """``x [rows, irreps.dim]`` → its parts by ``|m|`` after the rotation ``D x``."""
        blocks = x.split(self._flat_widths, dim=1)
        return _frame_parts(
            ((block, mul, l) for block, (mul, l) in zip(blocks, self.blocks)),
            rotations,
            self.lmax,
        )

    def from_frame(self, parts: list[torch.Tensor], rotations: list[torch.Tensor]) -> torch.Tensor:
        """Parts by ``|m|`` → ``[rows, irreps.dim]`` rotated back, ``D^T y'``."""
        rows = parts[0].shape[0]
        split = [iter(part.split(widths, dim=-1)) for part, widths in zip(parts, self.block_widths)]
        blocks = []
        for mul, l in self.blocks:
            if l == 0:
                blocks.append(next(split[0]))
                continue
            # [d, rows, mul] in frame order: m = 0, then the pairs ±k (and D's padding rows)
            rotation = rotations[l - 1]
            pieces = [next(split[0]).unsqueeze(0), *(next(split[k]) for k in range(1, l + 1))]
            if rotation.shape[1] > 2 * l + 1:
                pieces.append(pieces[0].new_zeros(rotation.shape[1] - 2 * l - 1, rows, mul))
            block = rotation.transpose(1, 2) @ torch.cat(pieces, dim=0).transpose(0, 1)
            blocks.append(block.transpose(1, 2).reshape(rows, mul * (2 * l + 1)))
        return concatenate(blocks, dim=1)


class FrameConcat:
    """:class:`~segnn.o3.IrrepsConcat` of several inputs straight into the edge frame: the
    parts of ``FrameLayout(irreps_out)`` without building the concatenation.

    ``features``: tensors ``[rows, irreps_i.dim]``; ``rotations``: :func:`frame_rotations`.
    """

    def __init__(self, irreps_list: Sequence[o3.Irreps | str]):
        concat = IrrepsConcat(irreps_list)
        self.irreps_in = concat.irreps_in
        self.irreps_out = concat.irreps_out
        self.lmax = self.irreps_out.lmax if len(self.irreps_out) else 0
        self._block_sizes = concat.block_sizes
        self.order = concat.order  # (input, block): the blocks in column order
        self.blocks = [[(mul, ir.l) for mul, ir in irreps] for irreps in concat.irreps_in]

    def __call__(
        self, features: Sequence[torch.Tensor], rotations: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        if len(features) != len(self.blocks):
            raise ValueError(f"expected {len(self.blocks)} inputs, got {len(features)}")
        split = [x.split(sizes, dim=-1) for x, sizes in zip(features, self._block_sizes)]
        blocks = ((split[i][n], *self.blocks[i][n]) for i, n in self.order)
        return _frame_parts(blocks, rotations, self.lmax)
