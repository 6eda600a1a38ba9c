"""The ``edge_frame`` backend: message products in each edge's frame, one frame per edge pair.

In the frame of an edge (the edge turned onto ``y``) its harmonics have one nonzero component,
and every message product is one dense matmul per ``|m|``
(:mod:`segnn.backends.edge_frame.frames`). On a graph in segnn's paired layout
(:mod:`segnn.data.graph`) both directions of an edge share one frame and the first message
product computes both in one matmul (:mod:`segnn.backends.edge_frame.pairs`); other graphs get
one frame per edge. PyTorch ops only: any device, forces and force training (the rotations are
differentiated exactly).
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from typing import NamedTuple

import torch

from segnn.backends.base import EDGE_CHUNK, Backend
from segnn.backends.edge_frame.frames import frame_rotations
from segnn.backends.edge_frame.mlp import FrameMLP
from segnn.backends.edge_frame.pairs import EdgePairs, edge_pairs
from segnn.backends.geometry import Geometry
from segnn.backends.view import LayerView


class EdgeFrames(NamedTuple):
    """A batch's frames: ``pairs`` of a paired graph, or one rotation per edge (``rotations``,
    :func:`~segnn.backends.edge_frame.frames.frame_rotations`), the other ``None``."""

    pairs: EdgePairs | None
    rotations: list[torch.Tensor] | None


class EdgeFrameBackend(Backend):
    __doc__ = __doc__
    name = "edge_frame"

    def __init__(self, compile: bool = False, edge_chunk: int | None = EDGE_CHUNK):
        super().__init__(compile, edge_chunk)
        self.mlps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def mlp(self, layer: LayerView) -> FrameMLP:
        """The layer's message MLP in the frame, built on first use."""
        mlp = self.mlps.get(layer)
        if mlp is None:
            mlp = self.mlps[layer] = FrameMLP(layer)
        return mlp

    def prepare_layer(self, layer: LayerView, dtype: torch.dtype, device: torch.device) -> None:
        self.mlp(layer).prepare(dtype, device)

    def frames(self, geometry: Geometry, lmax: int) -> Geometry:
        lmax = max(lmax, 1)
        if geometry.paired and geometry.num_edges:
            num_pairs = geometry.num_edges // 2
            rotations = frame_rotations(geometry.edge_vectors[:num_pairs], lmax)
            pairs = edge_pairs(
                geometry.edge_index, rotations, geometry.edge_scalars, geometry.edge_weights
            )
            return geometry.with_frames(EdgeFrames(pairs, None))
        return geometry.with_frames(EdgeFrames(None, frame_rotations(geometry.edge_vectors, lmax)))

    def parts(self, geometry: Geometry, size: int | None) -> list[Geometry]:
        """Parts of whole pairs (both directions, still in the paired layout), so that the parts
        of a paired graph keep their frames; per-edge frames are cut with their edges."""
        if size is None or geometry.num_edges <= size:
            return [geometry]
        pairs, rotations = geometry.frames
        if pairs is None:
            return [
                part.with_frames(EdgeFrames(None, [r[start : start + size] for r in rotations]))
                for start, part in zip(
                    range(0, geometry.num_edges, size), super().parts(geometry, size)
                )
            ]
        num_pairs, per_part = geometry.num_edges // 2, max(size // 2, 1)
        device = geometry.edge_index.device
        parts = []
        for start in range(0, num_pairs, per_part):
            stop = min(start + per_part, num_pairs)
            edges = torch.cat(
                [
                    torch.arange(start, stop, device=device),
                    torch.arange(num_pairs + start, num_pairs + stop, device=device),
                ]
            )
            part = geometry.edge_part(edges)
            parts.append(replace(part, frames=EdgeFrames(pairs.part(start, stop), None)))
        return parts

    def messages(
        self, layer: LayerView, h: torch.Tensor, geometry: Geometry
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pairs, rotations = geometry.frames
        mlp = self.mlp(layer)
        if pairs is not None:
            parts = mlp.concat(
                [
                    h.index_select(0, pairs.target),
                    h.index_select(0, pairs.source),
                    pairs.edge_scalars,
                ],
                pairs.rotations,
            )
            back = [rotation.flatten(0, 1) for rotation in pairs.back_rotations]
            messages = mlp.layout.from_frame(mlp(parts, paired=True), back).unflatten(0, (-1, 2))
            messages = layer.weigh(messages, pairs.edge_scalars, pairs.edge_weights)
            return messages.flatten(0, 1), pairs.receivers  # [P, 2, dim]: a → b, b → a
        source, target = geometry.edge_index
        parts = mlp.concat(
            [h.index_select(0, target), h.index_select(0, source), geometry.edge_scalars],
            rotations,
        )
        messages = mlp.layout.from_frame(mlp(parts, paired=False), rotations)
        return layer.weigh(messages, geometry.edge_scalars, geometry.edge_weights), target
