"""Equivariant instance normalisation over the nodes of each graph."""

from __future__ import annotations

import torch
from e3nn import o3
from torch_geometric.utils import scatter

from segnn.o3.irreps import concatenate


class EquivariantInstanceNorm(torch.nn.Module):
    """Normalise steerable node features graph by graph.

    ``0e`` channels are centred on their per-graph mean; then every field (one copy of an irrep)
    is divided by the root of its per-graph mean squared component, and scaled by a learned
    per-field weight (``0e`` channels also get a learned bias). Norms and scalar means are
    invariant, so the operation is O(3)-equivariant.

    Shapes: ``x [N, irreps.dim]``, ``batch [N]`` (graph index of each node) → ``[N, irreps.dim]``.
    """

    def __init__(self, irreps: o3.Irreps | str, eps: float = 1e-5):
        super().__init__()
        self.irreps = o3.Irreps(irreps)
        self.eps = eps
        # per block: (multiplicity, dimension, is 0e); plain ints for the hot path
        self._blocks = [(mul, ir.dim, ir == o3.Irrep("0e")) for mul, ir in self.irreps]
        self._widths = [mul * dim for mul, dim, _ in self._blocks]
        self._muls = [mul for mul, _, _ in self._blocks]
        self._scalar_muls = [mul for mul, _, scalar in self._blocks if scalar]
        self.num_fields = sum(self._muls)
        self.weight = torch.nn.Parameter(torch.ones(self.num_fields))
        self.bias = torch.nn.Parameter(torch.zeros(sum(self._scalar_muls)))

    def forward(self, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        # compiled, per-graph statistics go to as many slots as there are rows (those of no
        # graph stay empty and are never read back): batch.max() would stop the graph
        if torch.compiler.is_compiling():
            num_graphs = rows
        else:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        # block by block (split, not index_add/select over columns: those run slow on CPU)
        centred, powers = [], []
        for block, (mul, dim, scalar) in zip(x.split(self._widths, dim=1), self._blocks):
            if scalar:
                mean = scatter(block, batch, dim=0, dim_size=num_graphs, reduce="mean")
                block = block - mean.index_select(0, batch)
            centred.append(block)
            powers.append(block.view(rows, mul, dim).pow(2).mean(-1))
        field_power = scatter(
            concatenate(powers, 1), batch, dim=0, dim_size=num_graphs, reduce="mean"
        )
        scale = (field_power + self.eps).rsqrt().index_select(0, batch) * self.weight
        biases = iter(self.bias.split(self._scalar_muls))
        out = []
        for block, block_scale, (mul, dim, scalar) in zip(
            centred, scale.split(self._muls, dim=1), self._blocks
        ):
            block = (block.view(rows, mul, dim) * block_scale.unsqueeze(-1)).view(rows, mul * dim)
            out.append(block + next(biases) if scalar else block)
        return concatenate(out, 1)
