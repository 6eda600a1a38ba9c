"""Fused CPU kernels for the paired edge-frame messages (``frame_kernels.cpp`` beside this file).

A layer with edge pairs (:mod:`segnn.backends.edge_frame.pairs`) gathers both ends of every pair, rotates
them into the pair's frame and splits them by ``|m|`` (:class:`~segnn.backends.edge_frame.frames.FrameConcat`),
and after the message MLP rotates each message back and sums it on its receiving atom. With
PyTorch ops that is index_select, split, batched 4x3 and 5x5 matmuls, cat, and a scatter, each
a pass over the data, and as many again backwards. Two C++ kernels do each direction in one
pass:

* :func:`frame_gather`: ``h [N, F]``, the pairs' edge scalars ``[P, S]`` → the frame parts of
  ``[h_receiver ; h_sender ; scalars]`` (``[P, K_0]``, ``[2, P, K_k]``); backward: the parts'
  gradients rotated back, summed per atom;
* :func:`frame_scatter_sum`: the messages' frame parts (``2P`` rows, both directions of each pair
  interleaved) → ``D^T`` each, summed per receiver, ``[N, F]``; backward: the atoms' gradients
  rotated into each message's frame.

They compute the same numbers as the PyTorch path (to rounding; ``tests/test_frame_kernels.py``)
but differentiate only with respect to the features, not the rotations or the edge scalars, and
only once (force training differentiates twice; a second derivative raises), so the
``cpu_kernels`` backend uses them only where positions need no gradient (no forces) and on
CPU tensors (:func:`usable`).
The kernels check shapes, types and index ranges before touching memory. They are compiled
with the machine's C++ compiler on first use (~10 s, once per machine: :mod:`segnn.extensions`);
where that fails a warning says so and ``auto`` picks the ``edge_frame`` backend.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from segnn.backends.edge_frame.frames import FrameConcat, FrameLayout
from segnn.extensions import load_extension

SOURCE = Path(__file__).resolve().parent / "frame_kernels.cpp"
FLAGS = ["-O3", "-fopenmp"]


@functools.cache
def available() -> bool:
    """Whether the kernels are loaded, building them on the first call (warns if that fails;
    :mod:`segnn.extensions` builds once per machine and never waits on a dead build)."""
    try:
        load_extension("segnn_frame_kernels", SOURCE, FLAGS)
    except Exception as error:  # no compiler, a failed build, a build that did not finish
        warnings.warn(
            f"segnn: the fused edge-frame kernels could not be built or loaded ({error}); "
            "using the edge_frame backend's PyTorch ops instead (same results, slower). "
            "Choose train.backend: edge_frame to skip them.",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


def _require_kernels() -> None:
    if not available():
        raise RuntimeError(
            "segnn: the fused frame kernels are not available here (see the warning above); "
            "use the edge_frame backend (train.backend: edge_frame)"
        )


def usable(h: torch.Tensor, scalars: torch.Tensor, rotations: list[torch.Tensor]) -> bool:
    """Whether :func:`frame_gather` and :func:`frame_scatter_sum` apply: CPU float tensors, and
    no gradient needed for the rotations or the edge scalars (the kernels do not give one)."""
    if h.device.type != "cpu" or h.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_grad_enabled() and (
        scalars.requires_grad or any(rotation.requires_grad for rotation in rotations)
    ):
        return False
    return available()


def receiver_index(receivers: torch.Tensor, num_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The message rows sorted by receiver ``[2P]`` and where each atom's rows start
    ``[N + 1]``: what :func:`frame_gather`'s gradient and :func:`frame_scatter_sum` walk."""
    starts = receivers.new_zeros(num_atoms + 1)
    starts[1:] = torch.bincount(receivers, minlength=num_atoms).cumsum(0)
    return torch.argsort(receivers, stable=True), starts


def _table(blocks: list[tuple[int, int, int, int]], lmax: int) -> tuple[torch.Tensor, list[int]]:
    """The block table (see the C++ source) of ``blocks`` ``(input, offset, mul, l)`` in
    column order, and the widths ``K_k`` of the frame parts they fill."""
    widths, rows = [0] * (lmax + 1), []
    for block in blocks:
        mul, l = block[2], block[3]
        columns = [-1] * (lmax + 1)
        for k in range(l + 1):
            columns[k] = widths[k]
            widths[k] += mul
        rows.append([*block, *columns])
    return torch.tensor(rows, dtype=torch.long).view(-1, 4 + lmax + 1), widths


def _offsets(blocks: list[tuple[int, int]]) -> list[int]:
    """First column of each block ``(mul, l)`` in a row of e3nn features."""
    starts, position = [], 0
    for mul, l in blocks:
        starts.append(position)
        position += mul * (2 * l + 1)
    return starts


def gather_table(frame_concat: FrameConcat) -> tuple[torch.Tensor, list[int]]:
    """The block table of ``frame_concat``'s inputs ``[receiver h, sender h, edge scalars]``
    (see the C++ source) and the widths ``K_k`` of its frame parts."""
    if len(frame_concat.blocks) != 3 or any(l for _, l in frame_concat.blocks[2]):
        raise ValueError("frame_gather takes [h, h, edge scalars] (scalars of degree 0)")
    offsets = [_offsets(blocks) for blocks in frame_concat.blocks]
    blocks = [(i, offsets[i][n], *frame_concat.blocks[i][n]) for i, n in frame_concat.order]
    return _table(blocks, frame_concat.lmax)


def scatter_table(layout: FrameLayout) -> tuple[torch.Tensor, int]:
    """The block table of features laid out by ``layout`` and their width ``irreps.dim``."""
    offsets = _offsets(layout.blocks)
    table, _ = _table(
        [(0, offset, *block) for offset, block in zip(offsets, layout.blocks)], layout.lmax
    )
    return table, layout.irreps.dim


class _FrameGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, scalars, receivers, senders, order, offsets, table, widths, *rotations):
        pairs = receivers.shape[0]
        parts = [h.new_empty(pairs, widths[0])]
        parts += [h.new_empty(2, pairs, width) for width in widths[1:]]
        torch.ops.segnn_frame.gather(h, scalars, receivers, senders, rotations, table, parts)
        ctx.save_for_backward(order, offsets, table, *rotations)
        ctx.feature_shape = h.shape
        return tuple(parts)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):  # unused parts get zeros (autograd materialises them)
        order, offsets, table, *rotations = ctx.saved_tensors
        grads = [grad.contiguous() for grad in grads]
        grad_h = grads[0].new_empty(ctx.feature_shape)
        torch.ops.segnn_frame.gather_backward(grads, rotations, table, order, offsets, grad_h)
        return (grad_h,) + (None,) * (7 + len(rotations))


class _FrameScatterSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, width, receivers, order, offsets, num_rotations, *tensors):
        rotations = list(tensors[:num_rotations])
        messages = [part.contiguous() for part in tensors[num_rotations:]]
        out = messages[0].new_empty(offsets.shape[0] - 1, width)
        torch.ops.segnn_frame.scatter_sum(messages, rotations, table, order, offsets, out)
        ctx.save_for_backward(table, receivers, *rotations)
        ctx.message_shapes = [part.shape for part in messages]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        table, receivers, *rotations = ctx.saved_tensors
        grads = [grad.new_empty(shape) for shape in ctx.message_shapes]
        torch.ops.segnn_frame.scatter_sum_backward(
            grad.contiguous(), rotations, table, receivers, grads
        )
        return (None,) * (6 + len(rotations)) + tuple(grads)


def frame_gather(
    h: torch.Tensor,
    scalars: torch.Tensor,
    receivers: torch.Tensor,
    senders: torch.Tensor,
    index: tuple[torch.Tensor, torch.Tensor],
    rotations: list[torch.Tensor],
    table: torch.Tensor,
    widths: list[int],
) -> list[torch.Tensor]:
    """``FrameConcat([h[receivers], h[senders], scalars], rotations)`` in one pass.

    ``h [N, F]``, ``scalars [P, S]``, ``receivers``/``senders`` ``[P]`` (int64), ``index``:
    ``receiver_index(...)`` (the rows ``2p``/``2p + 1`` of pair ``p`` received by
    ``receivers[p]``/``senders[p]``, sorted by atom; for the gradient), ``rotations``
    :func:`~segnn.backends.edge_frame.frames.frame_rotations` ``[P, d', 2l + 1]`` per degree, ``(table,
    widths)`` from :func:`gather_table` → parts ``[P, K_0]``, ``[2, P, K_k]``. Differentiable
    with respect to ``h`` only."""
    _require_kernels()
    rotations = [rotation.contiguous() for rotation in rotations]
    order, offsets = index
    parts = _FrameGather.apply(
        h.contiguous(),
        scalars.contiguous(),
        receivers,
        senders,
        order,
        offsets,
        table,
        widths,
        *rotations,
    )
    return list(parts)


def frame_scatter_sum(
    parts: list[torch.Tensor],
    rotations: list[torch.Tensor],
    receivers: torch.Tensor,
    index: tuple[torch.Tensor, torch.Tensor],
    table: torch.Tensor,
    width: int,
) -> torch.Tensor:
    """``FrameLayout.from_frame`` of the messages, summed per receiving atom, in one pass.

    ``parts``: the messages by ``|m|`` (``[2P, K_0]``, ``[2, 2P, K_k]``; rows ``2p`` and
    ``2p + 1`` are pair ``p``'s two directions); ``rotations``: the pairs' frame rotations ``D``,
    ``[P, d', 2l + 1]`` per degree (row ``2p + 1`` is rotated back by ``(-1)^l D``, as in
    :mod:`segnn.backends.edge_frame.pairs`); ``receivers [2P]``; ``index``: ``receiver_index(...)``
    (rows sorted by receiver, each atom's first); ``(table, width)`` from
    :func:`scatter_table` → ``[N, width]``. Differentiable with respect to ``parts`` only."""
    _require_kernels()
    rotations = [rotation.contiguous() for rotation in rotations]
    order, offsets = index
    return _FrameScatterSum.apply(
        table, width, receivers, order, offsets, len(rotations), *rotations, *parts
    )
