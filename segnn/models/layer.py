"""One SEGNN message-passing layer."""

from __future__ import annotations

import torch
from e3nn import o3
from torch_geometric.nn import MessagePassing

from segnn.o3 import EquivariantInstanceNorm, IrrepsConcat, RadialChannelWeights, SteerableMLP
from segnn.o3.edge_frame import FrameConcat, FrameLayout
from segnn.o3.edge_pairs import PairMirror
from segnn.o3.mlp import ProductFunction
from segnn.o3.tensor_product import Parameterization


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

    The layer holds the parameters and the math of both functions; *how* the messages are
    gathered, computed and summed is a backend's choice (:mod:`segnn.backends`: per edge, in
    each edge's frame, one frame per edge pair, fused CPU kernels, e3nn's products), all the
    same function. :meth:`forward` hands the layer to the model's backend.

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
        # the message input straight into the edge frame, and the message out of it
        self.message_frames = (
            FrameConcat(message_inputs),
            FrameLayout(self.message_mlp.irreps_out),
        )
        self.pair_mirror = PairMirror(self.message_frames[0], swap=(0, 1))
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
        self.attribute_scale = attribute_scale  # Y^0 of the edge attributes (edge frame)

    def forward(self, h: torch.Tensor, geometry, backend) -> torch.Tensor:
        """``h [N, irreps_hidden.dim]`` → ``[N, irreps_hidden.dim]``: the messages summed by
        ``backend.convolve``, then the node update (``backend.update``)."""
        return backend.update(self, h, backend.convolve(self, h, geometry), geometry)

    def message(
        self,
        h_i: torch.Tensor,
        h_j: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_scalars: torch.Tensor,
        edge_weights: torch.Tensor | None,
        product: ProductFunction | None = None,
    ) -> torch.Tensor:
        """``m_ij`` per edge, every product evaluated by ``product`` (a backend's hook) or by
        itself."""
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
