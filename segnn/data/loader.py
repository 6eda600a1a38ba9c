"""Batching molecules into PyG batches with their radius graphs."""

from __future__ import annotations

from collections.abc import Sequence

from torch_geometric.data import Batch, Data

from segnn.data.graph import mark_paired, radius_graph
from segnn.data.neighbours import batched_neighbour_list


class RadiusGraphCollate:
    """``collate_fn`` for a ``DataLoader``: a list of ``Data(pos, z, ...)`` → one ``Batch`` whose
    ``edge_index`` joins atoms of the same molecule closer than ``cutoff`` Å (one batched call),
    in the paired layout (:mod:`segnn.data.graph`); batches of periodic structures (with
    ``cell`` and ``pbc``) get their images and ``edge_shift`` too."""

    def __init__(self, cutoff: float):
        self.cutoff = cutoff

    def __call__(self, molecules: Sequence[Data]) -> Batch:
        batch = Batch.from_data_list(list(molecules))
        if "cell" in batch:  # periodic structures: each with its images
            batch.edge_index, batch.edge_shift = batched_neighbour_list(batch, self.cutoff)
        else:
            batch.edge_index = radius_graph(batch.pos, self.cutoff, batch.batch)
        return mark_paired(batch)
