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

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    def chunks(self, size: int | None) -> list[Geometry]:
        """The edges in consecutive parts of at most ``size`` edges (``None``: one part, this
        geometry); node features are shared. With ``pairs`` each part holds whole pairs (both
        directions, still in the paired layout), so that parts of a paired graph keep their
        edge frames."""
        if size is None or self.num_edges <= size:
            return [self]
        if self.pairs is None:
            return [
                self.edge_part(slice(start, start + size))
                for start in range(0, self.num_edges, size)
            ]
        num_pairs, per_part = self.num_edges // 2, max(size // 2, 1)
        parts = []
        for start in range(0, num_pairs, per_part):
            stop = min(start + per_part, num_pairs)
            edges = torch.cat(
                [
                    torch.arange(start, stop, device=self.edge_index.device),
                    torch.arange(
                        num_pairs + start, num_pairs + stop, device=self.edge_index.device
                    ),
                ]
            )
            parts.append(replace(self.edge_part(edges), pairs=self.pairs.part(start, stop)))
        return parts

    def edge_part(self, edges: slice | torch.Tensor) -> Geometry:
        """The geometry of some of the edges (a slice or an index ``[E']``), nodes shared."""
        return replace(
            self,
            edge_index=self.edge_index[:, edges],
            edge_vectors=self.edge_vectors[edges],
            edge_attr=self.edge_attr[edges],
            edge_scalars=self.edge_scalars[edges],
            edge_weights=None if self.edge_weights is None else self.edge_weights[edges],
            rotations=None if self.rotations is None else [r[edges] for r in self.rotations],
        )

    def with_frames(
        self, rotations: list[torch.Tensor] | None = None, pairs: EdgePairs | None = None
    ) -> Geometry:
        """A copy with the edge frames a backend computed."""
        return replace(self, rotations=rotations, pairs=pairs)
