"""What the layers need to know about a batch's geometry, computed once per forward pass."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch


@dataclass(frozen=True)
class Geometry:
    """A batch's graph and geometric features, shared by every layer (built by
    :meth:`segnn.models.SEGNN.geometry`; a backend adds what its messages need with
    :meth:`with_frames`).

    ``edge_index [2, E]`` (source, target); ``edge_vectors [E, 3]`` (``x_source - x_target``);
    ``edge_attr [E, irreps_attr.dim]`` (harmonics of the edge vectors); ``edge_scalars [E, S]``
    (invariant edge features); ``edge_weights [E]`` (cutoff envelope) or ``None``;
    ``node_attr [N, irreps_attr.dim]``; ``batch [N]``; ``paired``: the edges have segnn's paired
    layout (:mod:`segnn.data.graph`); ``frames``: whatever the backend's messages need, its own
    type (:meth:`~segnn.backends.Backend.frames`; ``None`` for per-edge messages).
    """

    edge_index: torch.Tensor
    edge_vectors: torch.Tensor
    edge_attr: torch.Tensor
    edge_scalars: torch.Tensor
    edge_weights: torch.Tensor | None
    node_attr: torch.Tensor
    batch: torch.Tensor
    paired: bool
    frames: Any = None

    @property
    def num_nodes(self) -> int:
        return self.node_attr.shape[0]

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    def edge_part(self, edges: slice | torch.Tensor) -> Geometry:
        """The geometry of some of the edges (a slice or an index ``[E']``), nodes shared,
        without frames (the backend cuts its own: :meth:`~segnn.backends.Backend.parts`)."""
        return replace(
            self,
            edge_index=self.edge_index[:, edges],
            edge_vectors=self.edge_vectors[edges],
            edge_attr=self.edge_attr[edges],
            edge_scalars=self.edge_scalars[edges],
            edge_weights=None if self.edge_weights is None else self.edge_weights[edges],
            frames=None,
        )

    def with_frames(self, frames: Any) -> Geometry:
        """A copy with the frames a backend computed."""
        return replace(self, frames=frames)
