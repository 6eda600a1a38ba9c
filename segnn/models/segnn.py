"""The SEGNN model: species embedding, steerable message passing, readout."""

from __future__ import annotations

import dataclasses

import torch
from ase.data import atomic_numbers, chemical_symbols
from e3nn import o3
from torch._subclasses.fake_tensor import FakeTensor
from torch_geometric.utils import scatter

from segnn.backends import DEFAULT, Backend, Geometry, make_backend
from segnn.config import ModelConfig
from segnn.data.graph import is_paired
from segnn.models.layer import SEGNNLayer
from segnn.o3 import (
    ConditionedTensorProduct,
    SmoothRadialFeatures,
    SphericalHarmonicsAttributes,
    SteerableMLP,
    balanced_irreps,
    scalar_irreps,
    weight_balanced_irreps,
)


class SEGNN(torch.nn.Module):
    """Steerable E(3)-equivariant graph neural network (Brandstetter et al., ICLR 2022).

    Pipeline, for a PyG batch with ``pos [N, 3]``, ``z [N]`` (atomic numbers),
    ``edge_index [2, E]`` and ``batch [N]``:

    1. attributes: ``a_ij = Y(x_j - x_i)`` up to ``lmax_attr`` and ``a_i = mean_j a_ij`` with
       ``a_i^0 = 1`` (:class:`segnn.o3.SphericalHarmonicsAttributes`);
    2. embedding: one-hot species (``S x 0e``), or the node inputs ``x`` (``input_irreps``),
       ⊗ ``a_i`` → hidden irreps (up to ``lmax_hidden``, spread by ``hidden_allocation``); with
       ``velocity_attribute`` the harmonics of ``vel`` (``l >= 1``) are added to ``a_i``, and with ``charge_product``
       ``q_i q_j`` joins the edge scalars;
    3. ``num_layers`` :class:`SEGNNLayer` with ``|x_ij|^2`` or ``|x_ij|`` as edge scalar
       (``radial: squared_distance`` or ``distance``), or with an enveloped Bessel basis as edge
       scalars, learnt radial
       per-channel weights on the messages and the envelope weighting messages and node
       attributes (``radial: bessel``, smooth at ``cutoff``);
    4. readout: ``graph`` task — steerable pre-pool MLP on nodes (conditioned on ``a_i``),
       sum/mean pooling, post-pool MLP → ``[num_graphs, output_irreps.dim]``;
       ``node`` task — the pre-pool MLP straight to ``[N, output_irreps.dim]``;
       ``energy`` task — the pre-pool MLP to one scalar per atom, summed → ``[num_graphs, 1]``.

    The geometry (edge vectors, harmonics, radial features, node attributes, and the edge
    frames the backend needs) is computed once per batch and handed to every layer
    (:meth:`geometry`). ``backend`` (:mod:`segnn.backends`, not saved with the weights) decides
    how the products are evaluated; :func:`use_backend` changes it.

    Outputs transform by ``output_irreps`` under O(3) and are invariant to translations and to
    the order of atoms (per-atom outputs follow the atoms). ``cutoff`` (Å) is needed for
    ``radial: bessel`` and must equal the cutoff of the graphs the model is given.
    """

    def __init__(self, config: ModelConfig, cutoff: float | None = None):
        super().__init__()
        self.config = dataclasses.replace(config)  # a copy: later edits of config do not reach it
        self.species = list(config.species)
        species_index = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
        for index, symbol in enumerate(self.species):
            species_index[atomic_numbers[symbol]] = index
        self.register_buffer("species_index", species_index, persistent=False)

        self.attributes = SphericalHarmonicsAttributes(
            config.lmax_attr, config.attribute_normalization
        )
        irreps_attr = self.attributes.irreps
        if config.radial == "bessel":
            if cutoff is None:
                raise ValueError(
                    "model.radial 'bessel' needs the graph cutoff: SEGNN(config, cutoff)"
                )
            self.radial = SmoothRadialFeatures(cutoff, config.num_radial, config.envelope_exponent)
            num_edge_scalars = config.num_radial
        else:
            self.radial = None
            num_edge_scalars = 1
        num_edge_scalars += int(config.charge_product)
        if config.hidden_allocation == "weights":
            self.irreps_hidden = weight_balanced_irreps(
                config.hidden_features, config.lmax_hidden, irreps_attr
            )
        else:
            self.irreps_hidden = balanced_irreps(config.hidden_features, config.lmax_hidden)
        self.irreps_out = o3.Irreps(config.output_irreps)
        self.lmax_hidden = self.irreps_hidden.lmax  # an int for the forward pass (and tracing)

        self.irreps_in = o3.Irreps(config.input_irreps or f"{len(self.species)}x0e")
        weights = config.parameterization
        self.embedding = ConditionedTensorProduct(
            self.irreps_in, irreps_attr, self.irreps_hidden, weights
        )
        self.layers = torch.nn.ModuleList(
            SEGNNLayer(
                self.irreps_hidden,
                irreps_attr,
                num_edge_scalars=num_edge_scalars,
                norm=config.norm == "instance",
                radial_weights=self.radial is not None,
                attribute_scale=self.attributes.constant,
                parameterization=weights,
                normalize_activations=config.normalize_activations,
            )
            for _ in range(config.num_layers)
        )
        if config.task in ("node", "energy"):
            self.node_head = SteerableMLP(
                self.irreps_hidden,
                self.irreps_hidden,
                self.irreps_out,
                irreps_attr,
                parameterization=weights,
                normalize_activations=config.normalize_activations,
            )
            self.graph_head = None
        else:
            only_scalars = all(ir.l == 0 for _, ir in self.irreps_out)
            irreps_pooled = (
                scalar_irreps(config.hidden_features) if only_scalars else self.irreps_hidden
            )
            self.node_head = SteerableMLP(
                self.irreps_hidden,
                self.irreps_hidden,
                irreps_pooled,
                irreps_attr,
                parameterization=weights,
                normalize_activations=config.normalize_activations,
            )
            # After pooling there is no geometry left to condition on: a constant 0e attribute
            # turns the tensor products into equivariant linear maps.
            self.graph_head = SteerableMLP(
                irreps_pooled,
                irreps_pooled,
                self.irreps_out,
                "1x0e",
                parameterization=weights,
                normalize_activations=config.normalize_activations,
            )

        self.backend: Backend = make_backend(DEFAULT)

    def species_one_hot(self, z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``[N]`` atomic numbers → ``[N, len(species)]`` one-hot; unknown elements raise
        (checked on real tensors only: compiled and exported code must not wait for the device;
        an exported model's loader checks the elements instead)."""
        if torch.compiler.is_compiling() or isinstance(z, FakeTensor):
            classes = torch.arange(len(self.species), device=z.device)
            return (self.species_index[z].unsqueeze(-1) == classes).to(dtype)
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

    def node_inputs(self, data, dtype: torch.dtype) -> torch.Tensor:
        """``[N, irreps_in.dim]``: ``data.x`` when ``model.input_irreps`` is set, else the one-hot
        species of ``data.z``."""
        if self.config.input_irreps is None:
            return self.species_one_hot(data.z, dtype)
        x = getattr(data, "x", None)
        if x is None or x.shape[-1] != self.irreps_in.dim:
            raise ValueError(
                f"model.input_irreps {self.irreps_in} needs data.x of shape [N, {self.irreps_in.dim}], "
                f"got {None if x is None else list(x.shape)}"
            )
        return x.to(dtype)

    def geometry(self, data) -> Geometry:
        """The batch's :class:`~segnn.backends.Geometry`, with the backend's edge frames."""
        pos, edge_index = data.pos, data.edge_index
        if edge_index is None:
            raise ValueError(
                "data has no edge_index: build graphs with segnn.data.atoms_to_graph or radius_graph"
            )
        batch = (
            data.batch
            if getattr(data, "batch", None) is not None
            else pos.new_zeros(len(pos), dtype=torch.long)
        )
        # index_select, not pos[index]: the backward (forces) is an index_add, not an
        # accumulating index_put
        edge_vectors = pos.index_select(0, edge_index[0]) - pos.index_select(0, edge_index[1])
        shift = getattr(data, "edge_shift", None)
        if shift is not None:  # periodic images: x_j - x_i + S cell
            cells = data.cell.to(pos.dtype).index_select(0, batch.index_select(0, edge_index[1]))
            edge_vectors = edge_vectors + torch.einsum("ek,ekc->ec", shift.to(pos.dtype), cells)
        edge_attr = self.attributes.edge_attributes(edge_vectors)
        if self.radial is None:
            edge_scalars, edge_weights = edge_vectors.pow(2).sum(-1, keepdim=True), None
            if self.config.radial == "distance":
                edge_scalars = edge_scalars.sqrt()
        else:
            edge_scalars, edge_weights = self.radial(edge_vectors.norm(dim=-1))
        node_attr = self.attributes.node_attributes(
            edge_attr, edge_index[1], pos.shape[0], edge_weights
        )
        if self.config.velocity_attribute:
            velocity_attr = self.attributes.edge_attributes(data.vel.to(pos.dtype))
            node_attr = node_attr + torch.cat(
                [torch.zeros_like(velocity_attr[:, :1]), velocity_attr[:, 1:]], dim=1
            )
        if self.config.charge_product:
            charge = data.charge.to(pos.dtype)
            edge_scalars = torch.cat(
                [edge_scalars, charge[edge_index[0]] * charge[edge_index[1]]], dim=1
            )
        geometry = Geometry(
            edge_index,
            edge_vectors,
            edge_attr,
            edge_scalars,
            edge_weights,
            node_attr,
            batch,
            paired=is_paired(data),
        )
        return self.backend.frames(geometry, self.lmax_hidden)

    def forward(self, data) -> torch.Tensor:
        """``data``: PyG ``Data``/``Batch`` with ``pos``, ``edge_index`` (and ``batch``), plus
        ``z`` (atomic numbers) or ``x`` (``model.input_irreps``), ``vel`` with
        ``model.velocity_attribute``, ``charge [N, 1]`` with ``model.charge_product``; periodic
        structures add ``cell [G, 3, 3]`` and ``edge_shift [E, 3]``
        (:mod:`segnn.data.neighbours`)."""
        geometry = self.geometry(data)
        backend, node_attr = self.backend, geometry.node_attr
        h = backend.apply(self.embedding, self.node_inputs(data, data.pos.dtype), node_attr)
        for layer in self.layers:
            h = layer(h, geometry, backend)
        h = backend.apply(self.node_head, h, node_attr)
        if self.config.task == "node":
            return h
        num_graphs = getattr(data, "num_graphs", None) or (
            int(geometry.batch.max()) + 1 if geometry.num_nodes else 0
        )
        if self.config.task == "energy":
            return scatter(h, geometry.batch, dim=0, dim_size=num_graphs, reduce="sum")
        pooled = scatter(h, geometry.batch, dim=0, dim_size=num_graphs, reduce=self.config.pool)
        return backend.apply(self.graph_head, pooled, pooled.new_ones(num_graphs, 1))


def use_backend(model: torch.nn.Module, name: str | Backend = "auto", **use) -> Backend:
    """Make every :class:`SEGNN` in ``model`` (a network or a task wrapper) compute with the
    backend ``name`` (:mod:`segnn.backends`), chosen for ``model``'s device and dtype, its
    radial weights and ``use``: ``forces``, ``force_training``, ``compile``
    (:func:`segnn.backends.make_backend`); or with a backend already made (several models
    sharing one choice), checked against the same. Call it after moving the model (it fills
    the coefficient caches for the model's dtype and device). Returns the backend."""
    networks = [module for module in model.modules() if isinstance(module, SEGNN)]
    if not networks:
        raise TypeError(f"{type(model).__name__} holds no SEGNN network")
    parameter = next(model.parameters())
    need = dict(
        device=parameter.device,
        dtype=parameter.dtype,
        radial_weights=any(network.radial is not None for network in networks),
    )
    if isinstance(name, Backend):
        backend = name
        use = {key: value for key, value in use.items() if key != "compile"}
        missing = backend.capabilities.missing(**need, **use)
        if missing:
            raise ValueError(f"backend {backend.name!r} does not support {', '.join(missing)}")
    else:
        backend = make_backend(name, **need, **use)
    for network in networks:
        network.backend = backend
        backend.prepare(
            (m for m in network.modules() if isinstance(m, ConditionedTensorProduct)),
            (layer.view for layer in network.layers),
        )
    return backend
