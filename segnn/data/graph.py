"""Graph construction in pure torch: batched radius graphs and fully connected graphs.

Edges follow PyTorch Geometric's ``source_to_target`` convention: ``edge_index[0]`` is the
source (neighbour) ``j``, ``edge_index[1]`` the target (centre) ``i``; there are no self loops,
and edges never connect two different graphs of a batch. When ``torch_cluster`` is installed
(``pip install 'segnn[fast]'``), :func:`radius_graph` hands the work to it.

Both builders return the *paired layout*: the first ``P`` edges are ``a → b`` with ``a < b``
and the last ``P`` their reverses in the same order, ``edge_index[:, P:] ==
edge_index[:, :P].flip(0)``. Models use it to compute both directions of a pair in one frame
(:mod:`segnn.backends.edge_frame.pairs`) without searching for reverse edges; :func:`mark_paired` records it
on a ``Data``/``Batch`` and :func:`is_paired` reads it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
from torch_geometric.data import Data

# Pairs examined per chunk: bounds memory to a few hundred MB however large a graph is.
_PAIRS_PER_CHUNK = 1 << 22
_HAS_TORCH_CLUSTER = importlib.util.find_spec("torch_cluster") is not None


def _graph_sizes(batch: torch.Tensor | None, num_nodes: int, device: torch.device) -> torch.Tensor:
    if batch is None:
        return torch.tensor([num_nodes], device=device)
    if batch.numel() and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch must be sorted (nodes of one graph contiguous), as PyG batches are")
    return torch.bincount(batch, minlength=int(batch.max()) + 1 if batch.numel() else 0)


def _within_graph_pairs(
    sizes: torch.Tensor,
) -> tuple[int, Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]]:
    """All ordered node pairs that share a graph, produced lazily chunk by chunk.

    Returns the number of pairs and ``pairs(start, stop) -> (target, source)`` for pair numbers
    in ``[start, stop)``; pairs are ordered by target, then source.
    """
    offsets = torch.cumsum(sizes, 0) - sizes
    pair_counts = sizes * sizes
    pair_offsets = torch.cumsum(pair_counts, 0) - pair_counts
    total = int(pair_counts.sum())

    def pairs(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = torch.arange(start, stop, device=sizes.device)
        graph = torch.searchsorted(pair_offsets, pair, right=True) - 1
        local = pair - pair_offsets[graph]
        size = sizes[graph]
        return offsets[graph] + local // size, offsets[graph] + local % size

    return total, pairs


PAIRED_ATTRIBUTE = "edges_paired"


def mark_paired(data: Data) -> Data:
    """Record that ``data.edge_index`` has the paired layout (module docstring); returns ``data``.
    Batching several marked graphs with PyG does not keep the mark (the layout is per graph)."""
    setattr(data, PAIRED_ATTRIBUTE, True)
    return data


def is_paired(data: Data) -> bool:
    """Whether ``data.edge_index`` was built in the paired layout by segnn (a Python flag: no
    look at the edges, no device synchronisation)."""
    return getattr(data, PAIRED_ATTRIBUTE, None) is True


def paired_edges(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``edge_index [2, 2P]`` in the paired layout from the ``P`` edges ``source → target``
    (``source < target``)."""
    return torch.cat([torch.stack([source, target]), torch.stack([target, source])], dim=1)


def radius_graph(
    pos: torch.Tensor,
    cutoff: float,
    batch: torch.Tensor | None = None,
) -> torch.Tensor:
    """Edges between distinct atoms of the same graph closer than ``cutoff``.

    Args:
        pos: ``[N, 3]`` positions.
        cutoff: radius (same unit as ``pos``); pairs with ``|x_i - x_j| < cutoff`` are joined.
        batch: ``[N]`` sorted graph index of every node, or ``None`` for a single graph.

    Returns:
        ``edge_index [2, E]`` (source, target) in the paired layout (module docstring), each
        half sorted by the larger index, then the smaller. Memory is bounded by the within-graph
        pairs, examined in chunks — never ``N^2`` over the whole batch.
    """
    if pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must have shape [N, 3], got {list(pos.shape)}")
    if cutoff <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if _HAS_TORCH_CLUSTER:
        import torch_cluster

        source, target = torch_cluster.radius_graph(
            pos, r=cutoff, batch=batch, max_num_neighbors=pos.shape[0]
        )
        ahead = source < target
        source, target = source[ahead], target[ahead]
        order = torch.argsort(target * pos.shape[0] + source)
        return paired_edges(source[order], target[order])
    sizes = _graph_sizes(batch, pos.shape[0], pos.device)
    total, pairs = _within_graph_pairs(sizes)
    cutoff_squared = cutoff * cutoff
    targets, sources = [], []
    for start in range(0, total, _PAIRS_PER_CHUNK):
        target, source = pairs(start, min(start + _PAIRS_PER_CHUNK, total))
        distance_squared = (pos[source] - pos[target]).pow(2).sum(-1)
        keep = (distance_squared < cutoff_squared) & (source < target)
        targets.append(target[keep])
        sources.append(source[keep])
    if not targets:
        return torch.zeros(2, 0, dtype=torch.long, device=pos.device)
    return paired_edges(torch.cat(sources), torch.cat(targets))


def full_graph(
    num_nodes: int, batch: torch.Tensor | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """All ordered pairs ``j -> i`` (``i != j``) within each graph, ``[2, sum_g n_g (n_g - 1)]``,
    in the paired layout (module docstring)."""
    device = batch.device if batch is not None else device
    sizes = _graph_sizes(batch, num_nodes, device)
    total, pairs = _within_graph_pairs(sizes)
    target, source = pairs(0, total)
    keep = source < target
    return paired_edges(source[keep], target[keep])
