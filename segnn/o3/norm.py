"""Equivariant instance normalisation over the nodes of each graph."""

from __future__ import annotations

import torch
from e3nn import o3
from torch_geometric.utils import scatter


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
        field_of_component, field_dim, is_scalar = [], [], []
        for mul, ir in self.irreps:
            for _ in range(mul):
                field_of_component += [len(field_dim)] * ir.dim
                field_dim.append(ir.dim)
                is_scalar.append(ir == o3.Irrep("0e"))
        self.num_fields = len(field_dim)
        self.register_buffer(
            "field_of_component", torch.tensor(field_of_component), persistent=False
        )
        self.register_buffer(
            "field_dim", torch.tensor(field_dim, dtype=torch.float), persistent=False
        )
        scalar_fields = torch.tensor(is_scalar, dtype=torch.bool)
        self.register_buffer(
            "scalar_component", scalar_fields[self.field_of_component], persistent=False
        )
        self.weight = torch.nn.Parameter(torch.ones(self.num_fields))
        self.bias = torch.nn.Parameter(torch.zeros(int(scalar_fields.sum())))
        self.register_buffer(
            "scalar_columns", torch.nonzero(self.scalar_component).flatten(), persistent=False
        )

    def forward(self, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        mean = scatter(x, batch, dim=0, dim_size=num_graphs, reduce="mean")
        x = x - torch.where(self.scalar_component, mean, torch.zeros_like(mean))[batch]
        squares = x.pow(2).new_zeros(x.shape[0], self.num_fields).index_add(
            1, self.field_of_component, x.pow(2)
        ) / self.field_dim.to(x.dtype)
        field_power = scatter(squares, batch, dim=0, dim_size=num_graphs, reduce="mean")
        scale = (field_power + self.eps).rsqrt()[batch] * self.weight
        x = x * scale.index_select(1, self.field_of_component)
        bias = x.new_zeros(x.shape[1]).index_copy(0, self.scalar_columns, self.bias)
        return x + bias
