"""One SEGNN message-passing layer."""

from __future__ import annotations

import torch
from e3nn import o3
from torch_geometric.nn import MessagePassing

from segnn.backends import Backend, Geometry, LayerView, ProductStep
from segnn.o3 import (
    ConditionedTensorProduct,
    EquivariantInstanceNorm,
    GatedTensorProduct,
    IrrepsConcat,
    RadialChannelWeights,
    SteerableMLP,
)
from segnn.o3.mlp import ProductFunction
from segnn.o3.tensor_product import Parameterization


def product_steps(mlp: SteerableMLP) -> tuple[ProductStep, ...]:
    """``mlp``'s layers as (product, gate or ``None``) steps."""
    return tuple(
        ProductStep(layer.tensor_product, layer.gate)
        if isinstance(layer, GatedTensorProduct)
        else ProductStep(layer, None)
        for layer in mlp.layers
    )


class SEGNNLayer(MessagePassing):
    """Steerable message passing (Brandstetter et al., ICLR 2022, eqs. 8-9).

    * message ``m_ij = w_ij R(s_ij) ⊙ φ_m(h_i ⊕ h_j ⊕ s_ij ; a_ij)`` — a two-layer gated
      steerable MLP conditioned on the edge attribute ``a_ij``; ``s_ij`` are invariant edge
      scalars (the squared distance, or a radial basis); ``w_ij`` an optional scalar edge
      weight (a smooth cutoff envelope; 1 when not given); ``R`` optional learnt per-channel
      radial weights (:class:`segnn.o3.RadialChannelWeights`, with ``radial_weights=True``);
    * update ``h_i' = h_i + φ_u(h_i ⊕ Σ_j m_ij ; a_i)`` — a steerable MLP conditioned on the node
      attribute ``a_i`` (gated hidden layer, linear output), with a residual connection;
    * optional equivariant instance norm of ``h'`` over the nodes of each graph.

    A PyTorch Geometric ``MessagePassing`` layer: :meth:`forward` calls :meth:`propagate`, and
    the layer holds the parameters and the math of :meth:`message` and :meth:`update`. *How*
    the messages are computed is a backend's choice (:mod:`segnn.backends`: per edge, in each
    edge's frame, one frame per edge pair, fused CPU kernels, e3nn's products), all the same
    function. The reference backends (``plain``, ``e3nn``) run PyG's ``message`` →
    ``aggregate`` → ``update``, so PyG's hooks and ``explain`` see every message; the fast
    backends compute messages and their sum in PyG's fused hook :meth:`message_and_aggregate`
    (their edges are gathered pair by pair, not per edge), which the layer takes whenever the
    backend asks for it and ``explain`` is off. ``decomposed_layers`` must stay 1: a message
    is not a sum over chunks of its input features. Backends read the layer only through
    :attr:`view` (:class:`~segnn.backends.view.LayerView`).

    Shapes: ``h [N, irreps_hidden.dim]`` and a :class:`~segnn.backends.geometry.Geometry` of
    ``E`` edges → ``[N, irreps_hidden.dim]``; :meth:`message`: ``h_i``, ``h_j``
    ``[E, irreps_hidden.dim]``, ``edge_attr [E, irreps_attr.dim]``, ``edge_scalars
    [E, num_edge_scalars]``, ``edge_weights [E]`` or ``None`` → ``[E, irreps_hidden.dim]``.
    """

    def __init__(
        self,
        irreps_hidden: o3.Irreps | str,
        irreps_attr: o3.Irreps | str,
        num_edge_scalars: int = 1,
        norm: bool = True,
        radial_weights: bool = False,
        attribute_scale: float = 1.0,
        parameterization: Parameterization = "normalized",
        normalize_activations: bool = False,
    ):
        super().__init__(aggr="add", node_dim=0)
        irreps_hidden = o3.Irreps(irreps_hidden)
        message_inputs = [irreps_hidden, irreps_hidden, o3.Irreps(f"{num_edge_scalars}x0e")]
        self.message_input = IrrepsConcat(message_inputs)
        self.message_mlp = SteerableMLP(
            self.message_input.irreps_out,
            irreps_hidden,
            irreps_hidden,
            irreps_attr,
            gate_output=True,
            parameterization=parameterization,
            normalize_activations=normalize_activations,
        )
        self.update_input = IrrepsConcat([irreps_hidden, irreps_hidden])
        self.update_mlp = SteerableMLP(
            self.update_input.irreps_out,
            irreps_hidden,
            irreps_hidden,
            irreps_attr,
            parameterization=parameterization,
            normalize_activations=normalize_activations,
        )
        if (
            self.message_mlp.irreps_out != irreps_hidden
            or self.update_mlp.irreps_out != irreps_hidden
        ):
            raise ValueError(f"hidden irreps must be sorted and simplified, got {irreps_hidden}")
        self.norm = EquivariantInstanceNorm(irreps_hidden) if norm else None
        self.radial_weights = (
            RadialChannelWeights(num_edge_scalars, irreps_hidden) if radial_weights else None
        )
        self.irreps_hidden = irreps_hidden
        self.view = LayerView(
            message_inputs=tuple(message_inputs),
            message_steps=product_steps(self.message_mlp),
            attribute_scale=attribute_scale,
            irreps_hidden=irreps_hidden,
            radial_weights=radial_weights,
            message=self.message,
            weigh=self.weigh,
            node_update=self.node_update,
            update_products=tuple(
                module
                for module in self.update_mlp.modules()
                if isinstance(module, ConditionedTensorProduct)
            ),
        )

    def forward(self, h: torch.Tensor, geometry: Geometry, backend: Backend) -> torch.Tensor:
        """``h [N, irreps_hidden.dim]`` → ``[N, irreps_hidden.dim]``: PyG's :meth:`propagate`
        (``message`` → ``aggregate`` → ``update``) where the backend computes messages per edge
        (:meth:`~segnn.backends.Backend.propagates`) or ``explain`` is on; otherwise PyG's
        fused path, :meth:`message_and_aggregate` then :meth:`update`."""
        if self.explain or backend.propagates(geometry):
            return self.propagate(
                geometry.edge_index,
                h=h,
                edge_attr=geometry.edge_attr,
                edge_scalars=geometry.edge_scalars,
                edge_weights=geometry.edge_weights,
                product=backend.product_function(),
                geometry=geometry,
                backend=backend,
            )
        aggregated = self.message_and_aggregate(geometry.edge_index, h, geometry, backend)
        return self.update(aggregated, h, geometry, backend)

    def message_and_aggregate(
        self, edge_index: torch.Tensor, h: torch.Tensor, geometry: Geometry, backend: Backend
    ) -> torch.Tensor:
        """PyG's fused hook: ``Σ_j m_ij`` per atom as the backend computes it,
        ``[N, irreps_hidden.dim]``."""
        return backend.convolve(self.view, h, geometry)

    def update(
        self, aggregated: torch.Tensor, h: torch.Tensor, geometry: Geometry, backend: Backend
    ) -> torch.Tensor:
        """PyG's update hook: the node update (:meth:`node_update`) as ``backend`` runs it."""
        return backend.update(self.view, h, aggregated, geometry)

    @property
    def decomposed_layers(self) -> int:
        return 1

    @decomposed_layers.setter
    def decomposed_layers(self, decomposed_layers: int) -> None:
        if decomposed_layers != 1:
            raise ValueError(
                "SEGNNLayer cannot decompose its messages by feature chunks: the message MLP "
                "is not a sum over chunks of its input channels"
            )

    def message(
        self,
        h_i: torch.Tensor,
        h_j: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_scalars: torch.Tensor,
        edge_weights: torch.Tensor | None,
        product: ProductFunction | None = None,
    ) -> torch.Tensor:
        """PyG's message hook: ``m_ij`` per edge (``h_i`` the receiver), every product evaluated
        by ``product`` (a backend's hook) or by itself."""
        message = self.message_mlp(self.message_input(h_i, h_j, edge_scalars), edge_attr, product)
        return self.weigh(message, edge_scalars, edge_weights)

    def weigh(
        self,
        message: torch.Tensor,
        edge_scalars: torch.Tensor,
        edge_weights: torch.Tensor | None,
    ) -> torch.Tensor:
        """``w_ij R(s_ij) ⊙ message``: the radial channel weights and the edge weight, when the
        layer has them. ``message [E, irreps_hidden.dim]`` or ``[E, k, irreps_hidden.dim]``
        (``k`` messages per edge row, e.g. both directions of an edge pair)."""
        extra = (None,) * (message.dim() - 2)
        if self.radial_weights is not None:
            message = message * self.radial_weights(edge_scalars)[(slice(None), *extra)]
        if edge_weights is not None:
            message = message * edge_weights[(slice(None), *extra, None)]
        return message

    def node_update(
        self,
        aggregated: torch.Tensor,
        h: torch.Tensor,
        node_attr: torch.Tensor,
        batch: torch.Tensor,
        product: ProductFunction | None = None,
    ) -> torch.Tensor:
        """``h + φ_u(h ⊕ Σ_j m_ij ; a_i)``, then the instance norm (when the layer has one):
        ``[N, irreps_hidden.dim]`` each, ``node_attr [N, irreps_attr.dim]``, ``batch [N]``;
        ``product`` as in :meth:`message`."""
        h = h + self.update_mlp(self.update_input(h, aggregated), node_attr, product)
        return h if self.norm is None else self.norm(h, batch)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_hidden}, norm={self.norm is not None})"
