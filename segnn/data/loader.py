"""Batching molecules into PyG batches with their radius graphs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_geometric.data import Batch, Data

from segnn.data.graph import mark_paired, radius_graph
from segnn.data.loss_weights import with_loss_weights
from segnn.data.neighbours import batched_neighbour_list


def with_empty_cell(molecule: Data) -> Data:
    """A copy of a molecule's ``Data`` with a zero ``cell [1, 3, 3]`` and ``pbc [1, 3]`` all
    false, so that it batches with periodic structures."""
    molecule = molecule.clone()
    molecule.cell = molecule.pos.new_zeros(1, 3, 3)
    molecule.pbc = torch.zeros(1, 3, dtype=torch.bool)
    return molecule


class RadiusGraphCollate:
    """``collate_fn`` for a ``DataLoader``: a list of ``Data(pos, z, ...)`` → one ``Batch`` whose
    ``edge_index`` joins atoms of the same molecule closer than ``cutoff`` Å (one batched call),
    in the paired layout (:mod:`segnn.data.graph`); batches with periodic structures (with
    ``cell`` and ``pbc``; molecules beside them get an empty cell) get their images and
    ``edge_shift`` too; and the loss weights (:mod:`segnn.data.loss_weights`)."""

    def __init__(self, cutoff: float):
        self.cutoff = cutoff

    def __call__(self, molecules: Sequence[Data]) -> Batch:
        molecules = list(molecules)
        if any("cell" in item for item in molecules):  # molecules beside periodic cells
            molecules = [item if "cell" in item else with_empty_cell(item) for item in molecules]
        batch = Batch.from_data_list(molecules)
        if "cell" in batch:  # periodic structures: each with its images
            batch.edge_index, batch.edge_shift = batched_neighbour_list(batch, self.cutoff)
        else:
            batch.edge_index = radius_graph(batch.pos, self.cutoff, batch.batch)
        return with_loss_weights(mark_paired(batch))
