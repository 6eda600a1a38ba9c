"""Neighbour lists with periodic images, in linear time (``vesin``'s cell lists).

:func:`neighbour_list` returns the edges of one structure, molecule or periodic cell, in segnn's
paired layout (:mod:`segnn.data.graph`) with each edge's periodic image shift ``S`` (integers,
as floats): the edge vector is ``x_source - x_target + S @ cell``. Cells shorter than twice the
cutoff, where an atom meets several images of a neighbour (or of itself), give one edge per
image. For structures without periodic directions the edges are those of
:func:`segnn.data.graph.radius_graph`, in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from segnn.data.graph import paired_edges


def check_cell(cell: np.ndarray, pbc: Sequence[bool]) -> None:
    """Raise ``ValueError`` for a non-finite cell or one that has no volume along a periodic
    direction."""
    if not np.isfinite(cell).all():
        raise ValueError(f"the cell has non-finite entries: {cell.tolist()}")
    periodic = [axis for axis in range(3) if pbc[axis]]
    if periodic:
        vectors = cell[periodic]
        if np.linalg.matrix_rank(vectors, tol=1e-8) < len(periodic):
            raise ValueError(
                f"the cell vectors of the periodic directions {periodic} span no volume: "
                f"{cell.tolist()}"
            )


def neighbour_list(
    positions: torch.Tensor,
    cutoff: float,
    cell: torch.Tensor | np.ndarray | None = None,
    pbc: Sequence[bool] = (False, False, False),
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(edge_index [2, E], shifts [E, 3])`` of the pairs closer than ``cutoff`` (paired
    layout; ``shifts`` in units of the cell vectors, the positions' dtype). ``positions
    [N, 3]``; ``cell [3, 3]`` (rows are the cell vectors) and ``pbc`` (three booleans) for
    periodic structures."""
    from vesin import NeighborList

    if cutoff <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    points = positions.detach().cpu().double().numpy()
    pbc = [bool(flag) for flag in pbc]
    box = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    check_cell(box, pbc)
    if not any(pbc):
        box = np.zeros((3, 3))
    first, second, shifts = NeighborList(cutoff=cutoff, full_list=False).compute(
        points, box, pbc, "ijS"
    )
    # vesin's pair (i, j, S) has the vector x_j - x_i + S cell: the edge j -> i (source j).
    # Each pair's forward edge runs from the smaller index to the larger (an atom and its own
    # image: the direction whose shift has its first nonzero entry positive); reversing an
    # edge negates its shift.
    source, target = second.astype(np.int64), first.astype(np.int64)
    leading = np.take_along_axis(shifts, np.argmax(shifts != 0, axis=1)[:, None], 1)[:, 0]
    flip = (source > target) | ((source == target) & (leading < 0))
    source, target = np.where(flip, target, source), np.where(flip, source, target)
    shifts = np.where(flip[:, None], -shifts, shifts)
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], source, target))
    device = positions.device
    edge_index = paired_edges(
        torch.as_tensor(source[order], device=device),
        torch.as_tensor(target[order], device=device),
    )
    forward = torch.as_tensor(shifts[order], dtype=positions.dtype, device=device)
    return edge_index, torch.cat([forward, -forward])


def batched_neighbour_list(batch, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(edge_index, edge_shift)`` of a PyG batch of structures with ``cell [G, 3, 3]`` and
    ``pbc [G, 3]`` (all-False rows for molecules), one :func:`neighbour_list` per structure,
    assembled in the paired layout over the whole batch."""
    forward, reverse, forward_shifts, reverse_shifts = [], [], [], []
    starts = batch.ptr.tolist()
    cells, pbcs = batch.cell.detach().cpu().double().numpy(), batch.pbc.cpu().numpy()
    for graph, (start, stop) in enumerate(zip(starts[:-1], starts[1:])):
        edges, shifts = neighbour_list(batch.pos[start:stop], cutoff, cells[graph], pbcs[graph])
        half = edges.shape[1] // 2
        forward.append(edges[:, :half] + start)
        reverse.append(edges[:, half:] + start)
        forward_shifts.append(shifts[:half])
        reverse_shifts.append(shifts[half:])
    return torch.cat(forward + reverse, dim=1), torch.cat(forward_shifts + reverse_shifts)
