"""One SEGNN message-passing layer."""

from __future__ import annotations

import torch
from e3nn import o3
from torch_geometric.nn import MessagePassing

from segnn.o3 import EquivariantInstanceNorm, IrrepsConcat, RadialChannelWeights, SteerableMLP
from segnn.o3 import frame_kernels as frame_kernels_module
from segnn.o3.edge_frame import FrameConcat, FrameLayout
from segnn.o3.edge_pairs import EdgePairs, PairMirror
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

    With ``rotations`` (:func:`segnn.o3.edge_frame.frame_rotations` of the edge vectors, when
    ``edge_attr`` are their harmonics) the message MLP runs in each edge's frame: the same
    function, fewer operations. With ``pairs`` (:class:`segnn.o3.edge_pairs.EdgePairs` of a
    symmetric graph) it runs in one frame per pair of opposite edges, both directions at once:
    the same function again, with half the rotations into the frame. With ``frame_kernels``
    the pairs' gather into the frame and the messages' rotation back and sum run as fused CPU
    kernels where they apply (:mod:`segnn.o3.frame_kernels`; the same numbers).

    Shapes: ``h [N, irreps_hidden.dim]``, ``edge_index [2, E]`` (source, target),
    ``edge_attr [E, irreps_attr.dim]``, ``node_attr [N, irreps_attr.dim]``,
    ``edge_scalars [E, num_edge_scalars]``, ``batch [N]``, ``edge_weights [E]`` or ``None``,
    ``rotations`` ``[E, 2l+1, 2l+1]`` for ``l = 1 .. lmax`` or ``None``, ``pairs`` or ``None``
    → ``[N, irreps_hidden.dim]``.
    """

    def __init__(
        self,
        irreps_hidden: o3.Irreps | str,
        irreps_attr: o3.Irreps | str,
        num_edge_scalars: int = 1,
        norm: bool = True,
        radial_weights: bool = False,
        attribute_scale: float = 1.0,
        frame_kernels: bool = False,
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
        self.frame_kernels = frame_kernels
        self._gather_table = frame_kernels_module.gather_table(self.message_frames[0])
        self._scatter_table = frame_kernels_module.scatter_table(self.message_frames[1])
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

    def forward(
        self,
        h: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        node_attr: torch.Tensor,
        edge_scalars: torch.Tensor,
        batch: torch.Tensor,
        edge_weights: torch.Tensor | None = None,
        rotations: list[torch.Tensor] | None = None,
        pairs: EdgePairs | None = None,
    ) -> torch.Tensor:
        if pairs is not None and self._fused(h, pairs):
            aggregated = self.fused_paired_aggregate(h, pairs)
        elif pairs is None:
            aggregated = self.propagate(
                edge_index,
                h=h,
                edge_attr=edge_attr,
                edge_scalars=edge_scalars,
                edge_weights=edge_weights,
                rotations=rotations,
            )
        else:
            messages = self.paired_message(
                h.index_select(0, pairs.target),
                h.index_select(0, pairs.source),
                pairs.edge_scalars,
                pairs.edge_weights,
                pairs.rotations,
                pairs.back_rotations,
            )
            aggregated = self.aggregate(messages, pairs.receivers, dim_size=h.shape[0])
        return self.node_update(aggregated, h, node_attr, batch)

    def message(
        self,
        h_i: torch.Tensor,
        h_j: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_scalars: torch.Tensor,
        edge_weights: torch.Tensor | None,
        rotations: list[torch.Tensor] | None,
    ) -> torch.Tensor:
        if rotations is None:
            message = self.message_mlp(self.message_input(h_i, h_j, edge_scalars), edge_attr)
        else:  # the same map in each edge's frame, where edge_attr is Y(ŷ)
            frame_in, frame_out = self.message_frames
            parts = self.message_mlp.forward_frame(
                frame_in([h_i, h_j, edge_scalars], rotations), self.attribute_scale
            )
            message = frame_out.from_frame(parts, rotations)
        if self.radial_weights is not None:
            message = message * self.radial_weights(edge_scalars)
        return message if edge_weights is None else message * edge_weights.unsqueeze(-1)

    def paired_message(
        self,
        h_target: torch.Tensor,
        h_source: torch.Tensor,
        edge_scalars: torch.Tensor,
        edge_weights: torch.Tensor | None,
        rotations: list[torch.Tensor],
        back_rotations: list[torch.Tensor],
    ) -> torch.Tensor:
        """The messages of both directions of ``P`` edge pairs ``a → b`` (``h_target`` =
        ``h_b``, ``h_source`` = ``h_a``, ``[P, irreps_hidden.dim]``; the rest as in
        :class:`~segnn.o3.edge_pairs.EdgePairs`) → ``[2P, irreps_hidden.dim]``, ``a → b`` then
        ``b → a`` per pair."""
        frame_in, frame_out = self.message_frames
        parts = self.message_mlp.forward_frame(
            frame_in([h_target, h_source, edge_scalars], rotations),
            self.attribute_scale,
            mirror=self.pair_mirror,
        )
        back = [rotation.flatten(0, 1) for rotation in back_rotations]
        message = frame_out.from_frame(parts, back).unflatten(0, (-1, 2))  # [P, 2, dim]
        if self.radial_weights is not None:
            message = message * self.radial_weights(edge_scalars).unsqueeze(1)
        if edge_weights is not None:
            message = message * edge_weights[:, None, None]
        return message.flatten(0, 1)

    def _fused(self, h: torch.Tensor, pairs: EdgePairs) -> bool:
        return (
            self.frame_kernels
            and self.radial_weights is None
            and pairs.edge_weights is None
            and frame_kernels_module.usable(h, pairs.edge_scalars, pairs.rotations)
        )

    def fused_paired_aggregate(self, h: torch.Tensor, pairs: EdgePairs) -> torch.Tensor:
        """``Σ_j m_ij`` per atom, ``[N, irreps_hidden.dim]``, for a symmetric graph's edge
        ``pairs``, with the fused kernels: gather into the frame, the message MLP, rotation back
        and sum (:mod:`segnn.o3.frame_kernels`). No radial or edge weights; no gradients with
        respect to the rotations or edge scalars."""
        table, widths = self._gather_table
        parts = frame_kernels_module.frame_gather(
            h,
            pairs.edge_scalars,
            pairs.target,
            pairs.source,
            pairs.receiver_index,
            pairs.rotations,
            table,
            widths,
        )
        parts = self.message_mlp.forward_frame(parts, self.attribute_scale, mirror=self.pair_mirror)
        table, width = self._scatter_table
        return frame_kernels_module.frame_scatter_sum(
            parts, pairs.rotations, pairs.receivers, pairs.receiver_index, table, width
        )

    def node_update(
        self,
        aggregated: torch.Tensor,
        h: torch.Tensor,
        node_attr: torch.Tensor,
        batch: torch.Tensor,
    ) -> torch.Tensor:
        """``h + φ_u(h ⊕ Σ_j m_ij ; a_i)``, then the instance norm (when the layer has one):
        ``[N, irreps_hidden.dim]`` each, ``node_attr [N, irreps_attr.dim]``, ``batch [N]``."""
        h = h + self.update_mlp(self.update_input(h, aggregated), node_attr)
        return h if self.norm is None else self.norm(h, batch)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_hidden}, norm={self.norm is not None})"
