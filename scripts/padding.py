"""Fixed-shape batches: atoms and edges padded to buckets, for compiled code and CUDA graphs.

Used by ``scripts/benchmark.py`` for its ``<backend>_fullgraph`` variants (the backends whose
``Capabilities.fullgraph`` holds) and by ``scripts/gpu_check.sh``; the trainer does not pad:
on this project's CPUs one graph of a padded step ran no faster than the fused kernels and
took minutes to compile (docs/performance.md, "Fixed shapes, one graph").

``torch.compile(fullgraph=True)`` and CUDA graphs (``mode="reduce-overhead"``) want tensors
whose shapes repeat. :func:`pad_batch` rounds a batch's atoms and edges up to fixed sizes by
adding one *padding graph*: at least two padding atoms (species ``padding_number``, on the x
axis 1 Å apart) joined only to each other by edge pairs ``p0 ↔ p1`` in segnn's paired layout.
Why the padding is inert: every operation of a SEGNN is local to a graph — messages run along
edges, norms and pooling group atoms by ``batch`` — and no edge joins the padding graph to a
real one, so the real graphs' outputs, and every gradient of a loss on them, are those of the
unpadded batch (``tests/test_padding.py`` checks it to rounding). The padding graph's loss
weights (:mod:`segnn.data.loss_weights`) are zero, so losses ignore it.
"""

from __future__ import annotations

import math

import torch
from torch_geometric.data import Batch

from segnn.data.graph import is_paired, mark_paired
from segnn.data.loss_weights import FIELDS


def bucket(size: int, step: int) -> int:
    """``size`` rounded up to a multiple of ``step``."""
    return step * math.ceil(size / step)


def pad_batch(
    batch: Batch,
    num_atoms: int,
    num_edges: int,
    padding_number: int = 1,
) -> Batch:
    """``batch`` (paired layout, :mod:`segnn.data.graph`) with a padding graph that brings it to
    exactly ``num_atoms`` atoms and ``num_edges`` edges (module docstring).

    Node tensors (``pos``, ``z``, ``x``, ``vel``, ``charge``, ``forces``, ...) get zero rows
    (``z``: ``padding_number``), graph tensors (``y``, ``energy``) one zero row, loss weights
    included: the padding does not count. Needs ``num_atoms >= N + 2`` and ``num_edges - E`` even and >= 0.
    """
    if not is_paired(batch):
        raise ValueError("pad_batch needs edges in the paired layout (segnn's collates)")
    atoms, edges, graphs = batch.num_nodes, batch.edge_index.shape[1], batch.num_graphs
    if num_atoms < atoms + 2 or num_edges < edges or (num_edges - edges) % 2:
        raise ValueError(
            f"cannot pad {atoms} atoms and {edges} edges to {num_atoms} atoms (at least two "
            f"more) and {num_edges} edges (an even number more)"
        )
    extra_atoms, extra_pairs = num_atoms - atoms, (num_edges - edges) // 2
    device = batch.pos.device
    padded = Batch()  # fresh: its number of graphs comes from ptr
    for key, value in batch.items():
        if not torch.is_tensor(value) or key in ("edge_index", "batch", "ptr"):
            continue
        if value.shape[:1] == (atoms,) and batch.is_node_attr(key):
            fill = padding_number if key == "z" else 0
            padded[key] = torch.cat([value, value.new_full((extra_atoms, *value.shape[1:]), fill)])
        elif value.shape[:1] == (graphs,):
            padded[key] = torch.cat([value, value.new_zeros(1, *value.shape[1:])])
    pos = torch.zeros(extra_atoms, 3, dtype=batch.pos.dtype, device=device)
    pos[:, 0] = torch.arange(extra_atoms, dtype=batch.pos.dtype, device=device)  # 1 Å apart
    padded.pos = torch.cat([batch.pos, pos])
    padded.batch = torch.cat([batch.batch, batch.batch.new_full((extra_atoms,), graphs)])
    half = edges // 2
    forward_pad = torch.tensor([[atoms], [atoms + 1]], device=device).expand(2, extra_pairs)
    padded.edge_index = torch.cat(
        [
            batch.edge_index[:, :half],
            forward_pad,
            batch.edge_index[:, half:],
            forward_pad.flip(0),
        ],
        dim=1,
    )
    padded.ptr = torch.cat([batch.ptr, batch.ptr.new_tensor([num_atoms])])
    if any(field not in padded for field in FIELDS):
        raise ValueError("pad_batch needs a batch with loss weights (segnn's collates)")
    return mark_paired(padded)


class PaddedCollate:
    """``collate_fn`` that pads what ``collate`` (a segnn collate: paired layout) returns to
    bucket sizes: atoms to a multiple of ``atom_step`` (two more at least), edges to a multiple
    of ``edge_step`` (even). Batches of the same size then mostly share a shape."""

    def __init__(self, collate, atom_step: int = 64, edge_step: int = 512, padding_number: int = 1):
        if edge_step % 2:
            raise ValueError(f"edge_step must be even (edges come in pairs), got {edge_step}")
        self.collate, self.atom_step, self.edge_step = collate, atom_step, edge_step
        self.padding_number = padding_number

    def __call__(self, items) -> Batch:
        batch = self.collate(items)
        num_atoms = bucket(batch.num_nodes + 2, self.atom_step)
        num_edges = bucket(batch.edge_index.shape[1] + 2, self.edge_step)
        return pad_batch(batch, num_atoms, num_edges, self.padding_number)
