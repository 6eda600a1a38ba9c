"""The weights every segnn loss reduces with, declared on every batch segnn's collates make.

A loss is a mean over the graphs (energies, properties), the atoms (forces, displacements) or
the graphs with a stress of a batch. Each batch carries that mean as weights, so a loss is one
weighted sum whatever the batch is:

* ``graph_loss_weight [G]``: ``1 / graphs``;
* ``atom_loss_weight [N]``: ``1 / atoms``;
* ``stress_loss_weight [G]``: ``1 / stressed`` on the graphs with ``has_stress``, else 0.

The counts are the batch's own, or, for one rank's share of a distributed batch, those of the
whole batch (:mod:`segnn.train.distributed`): the ranks' losses then add up to the whole
batch's. A padding graph (``scripts/padding.py``) gets zero weights.
"""

from __future__ import annotations

import torch
from torch_geometric.data import Batch

FIELDS = ("graph_loss_weight", "atom_loss_weight", "stress_loss_weight")


def with_loss_weights(
    batch: Batch, graphs: int | None = None, atoms: int | None = None, stressed: int | None = None
) -> Batch:
    """``batch`` with the loss weights of the module docstring, for a whole batch of ``graphs``
    graphs, ``atoms`` atoms and ``stressed`` graphs with a stress (default: this batch's)."""
    dtype, device = torch.float64, batch.pos.device
    has_stress = (
        batch.has_stress.to(dtype)
        if "has_stress" in batch
        else torch.zeros(batch.num_graphs, dtype=dtype, device=device)
    )
    graphs = batch.num_graphs if graphs is None else graphs
    atoms = batch.num_nodes if atoms is None else atoms
    stressed = int(has_stress.sum()) if stressed is None else stressed
    batch.graph_loss_weight = torch.full(
        (batch.num_graphs,), 1 / max(graphs, 1), dtype=dtype, device=device
    )
    batch.atom_loss_weight = torch.full(
        (batch.num_nodes,), 1 / max(atoms, 1), dtype=dtype, device=device
    )
    batch.stress_loss_weight = has_stress / max(stressed, 1)
    return batch
