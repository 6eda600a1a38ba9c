"""The SEGNN model: species embedding, steerable message passing, readout."""

from __future__ import annotations

import torch
from ase.data import atomic_numbers, chemical_symbols
from e3nn import o3
from torch_geometric.utils import scatter

from segnn.config import ModelConfig
from segnn.models.layer import SEGNNLayer
from segnn.o3 import (
    ConditionedTensorProduct,
    SphericalHarmonicsAttributes,
    SteerableMLP,
    balanced_irreps,
    scalar_irreps,
)


class SEGNN(torch.nn.Module):
    """Steerable E(3)-equivariant graph neural network (Brandstetter et al., ICLR 2022).

    Pipeline, for a PyG batch with ``pos [N, 3]``, ``z [N]`` (atomic numbers),
    ``edge_index [2, E]`` and ``batch [N]``:

    1. attributes: ``a_ij = Y(x_j - x_i)`` up to ``lmax_attr`` and ``a_i = mean_j a_ij`` with
       ``a_i^0 = 1`` (:class:`segnn.o3.SphericalHarmonicsAttributes`);
    2. embedding: one-hot species (``S x 0e``) ⊗ ``a_i`` → hidden irreps (balanced up to
       ``lmax_hidden``);
    3. ``num_layers`` :class:`SEGNNLayer` with ``|x_ij|^2`` as edge scalar;
    4. readout: ``graph`` task — steerable pre-pool MLP on nodes (conditioned on ``a_i``),
       sum/mean pooling, post-pool MLP → ``[num_graphs, output_irreps.dim]``;
       ``node`` task — the pre-pool MLP straight to ``[N, output_irreps.dim]``.

    Outputs transform by ``output_irreps`` under O(3) and are invariant to translations and to
    the order of atoms (per-atom outputs follow the atoms).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.species = list(config.species)
        species_index = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
        for index, symbol in enumerate(self.species):
            species_index[atomic_numbers[symbol]] = index
        self.register_buffer("species_index", species_index, persistent=False)

        self.attributes = SphericalHarmonicsAttributes(config.lmax_attr)
        irreps_attr = self.attributes.irreps
        self.irreps_hidden = balanced_irreps(config.hidden_features, config.lmax_hidden)
        self.irreps_out = o3.Irreps(config.output_irreps)

        self.embedding = ConditionedTensorProduct(
            f"{len(self.species)}x0e", irreps_attr, self.irreps_hidden
        )
        self.layers = torch.nn.ModuleList(
            SEGNNLayer(self.irreps_hidden, irreps_attr, norm=config.norm == "instance")
            for _ in range(config.num_layers)
        )
        if config.task == "node":
            self.node_head = SteerableMLP(
                self.irreps_hidden, self.irreps_hidden, self.irreps_out, irreps_attr
            )
            self.graph_head = None
        else:
            only_scalars = all(ir.l == 0 for _, ir in self.irreps_out)
            irreps_pooled = (
                scalar_irreps(config.hidden_features) if only_scalars else self.irreps_hidden
            )
            self.node_head = SteerableMLP(
                self.irreps_hidden, self.irreps_hidden, irreps_pooled, irreps_attr
            )
            # After pooling there is no geometry left to condition on: a constant 0e attribute
            # turns the tensor products into equivariant linear maps.
            self.graph_head = SteerableMLP(irreps_pooled, irreps_pooled, self.irreps_out, "1x0e")

    def species_one_hot(self, z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``[N]`` atomic numbers → ``[N, len(species)]`` one-hot; unknown elements raise."""
        if z.numel() and (int(z.min()) < 1 or int(z.max()) >= len(chemical_symbols)):
            raise ValueError(
                f"atomic numbers must lie in 1..{len(chemical_symbols) - 1}, got {z.unique().tolist()}"
            )
        index = self.species_index[z]
        if bool((index < 0).any()):
            unknown = sorted({chemical_symbols[int(number)] for number in z[index < 0]})
            raise ValueError(
                f"element(s) {', '.join(unknown)} not known to this model, which was built for "
                f"{', '.join(self.species)}"
            )
        return torch.nn.functional.one_hot(index, len(self.species)).to(dtype)

    def forward(self, data) -> torch.Tensor:
        """``data``: PyG ``Data``/``Batch`` with ``pos``, ``z``, ``edge_index`` (and ``batch``)."""
        pos, z, edge_index = data.pos, data.z, data.edge_index
        if edge_index is None:
            raise ValueError(
                "data has no edge_index: build graphs with segnn.data.atoms_to_graph or radius_graph"
            )
        batch = (
            data.batch
            if getattr(data, "batch", None) is not None
            else pos.new_zeros(len(pos), dtype=torch.long)
        )
        num_nodes = pos.shape[0]

        edge_vectors = pos[edge_index[0]] - pos[edge_index[1]]
        edge_attr = self.attributes.edge_attributes(edge_vectors)
        node_attr = self.attributes.node_attributes(edge_attr, edge_index[1], num_nodes)
        edge_scalars = edge_vectors.pow(2).sum(-1, keepdim=True)

        h = self.embedding(self.species_one_hot(z, pos.dtype), node_attr)
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr, node_attr, edge_scalars, batch)
        h = self.node_head(h, node_attr)
        if self.graph_head is None:
            return h
        num_graphs = int(batch.max()) + 1 if num_nodes else 0
        pooled = scatter(h, batch, dim=0, dim_size=num_graphs, reduce=self.config.pool)
        return self.graph_head(pooled, pooled.new_ones(num_graphs, 1))


def build_model(config) -> SEGNN:
    """A :class:`SEGNN` from a :class:`segnn.config.Config`, its ``model`` section, a dict or a path."""
    from segnn.config import Config, load_config

    if isinstance(config, ModelConfig):
        return SEGNN(config)
    if not isinstance(config, Config):
        config = load_config(config)
    return SEGNN(config.model)
