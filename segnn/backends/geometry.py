"""What the layers need to know about a batch's geometry, computed once per forward pass."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from segnn.o3.edge_pairs import EdgePairs


@dataclass(frozen=True)
class Geometry:
    """A batch's graph and geometric features, shared by every layer (built by
    :meth:`segnn.models.SEGNN.geometry`; a backend adds what its messages need with
    :meth:`with_frames`).

    ``edge_index [2, E]`` (source, target); ``edge_vectors [E, 3]`` (``x_source - x_target``);
    ``edge_attr [E, irreps_attr.dim]`` (harmonics of the edge vectors); ``edge_scalars [E, S]``
    (invariant edge features); ``edge_weights [E]`` (cutoff envelope) or ``None``;
    ``node_attr [N, irreps_attr.dim]``; ``batch [N]``; ``paired``: the edges have segnn's paired
    layout (:mod:`segnn.data.graph`). Backends fill ``rotations`` (per-edge frames,
    ``[E, 2l+1, 2l+1]`` for ``l = 1 .. lmax``) or ``pairs``
    (:class:`~segnn.o3.edge_pairs.EdgePairs`).
    """

    edge_index: torch.Tensor
    edge_vectors: torch.Tensor
    edge_attr: torch.Tensor
    edge_scalars: torch.Tensor
    edge_weights: torch.Tensor | None
    node_attr: torch.Tensor
    batch: torch.Tensor
    paired: bool
    rotations: list[torch.Tensor] | None = None
    pairs: EdgePairs | None = None

    @property
    def num_nodes(self) -> int:
        return self.node_attr.shape[0]

    def with_frames(
        self, rotations: list[torch.Tensor] | None = None, pairs: EdgePairs | None = None
    ) -> Geometry:
        """A copy with the edge frames a backend computed."""
        return replace(self, rotations=rotations, pairs=pairs)
