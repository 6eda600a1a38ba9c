"""The ``edge_frame`` backend: message products in each edge's frame, one frame per edge pair.

In the frame of an edge (the edge turned onto ``y``) its harmonics have one nonzero component,
and every message product is one dense matmul per ``|m|`` (:mod:`segnn.o3.edge_frame`). On a
graph in segnn's paired layout (:mod:`segnn.data.graph`) both directions of an edge share one
frame and the first message product computes both in one matmul (:mod:`segnn.o3.edge_pairs`);
other graphs get one frame per edge. PyTorch ops only: any device, forces and force training
(the rotations are differentiated exactly).
"""

from __future__ import annotations

import torch

from segnn.backends.base import Backend
from segnn.backends.geometry import Geometry
from segnn.o3.edge_frame import frame_rotations
from segnn.o3.edge_pairs import EdgePairs, edge_pairs


class EdgeFrameBackend(Backend):
    __doc__ = __doc__
    name = "edge_frame"
    uses_frames = True

    def frames(self, geometry: Geometry, lmax: int) -> Geometry:
        lmax = max(lmax, 1)
        if geometry.paired and geometry.edge_index.shape[1]:
            num_pairs = geometry.edge_index.shape[1] // 2
            rotations = frame_rotations(geometry.edge_vectors[:num_pairs], lmax)
            pairs = edge_pairs(
                geometry.edge_index, rotations, geometry.edge_scalars, geometry.edge_weights
            )
            return geometry.with_frames(pairs=pairs)
        return geometry.with_frames(rotations=frame_rotations(geometry.edge_vectors, lmax))

    def messages(
        self, layer, h: torch.Tensor, geometry: Geometry
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = geometry.pairs
        if pairs is not None:
            messages = paired_messages(
                layer, h.index_select(0, pairs.target), h.index_select(0, pairs.source), pairs
            )
            return messages, pairs.receivers
        source, target = geometry.edge_index
        frame_in, frame_out = layer.message_frames
        parts = layer.message_mlp.forward_frame(
            frame_in(
                [h.index_select(0, target), h.index_select(0, source), geometry.edge_scalars],
                geometry.rotations,
            ),
            layer.attribute_scale,
        )
        messages = layer.weigh(
            frame_out.from_frame(parts, geometry.rotations),
            geometry.edge_scalars,
            geometry.edge_weights,
        )
        return messages, target


def paired_messages(
    layer, h_target: torch.Tensor, h_source: torch.Tensor, pairs: EdgePairs
) -> torch.Tensor:
    """The messages of both directions of ``P`` edge pairs ``a → b`` (``h_target`` = ``h_b``,
    ``h_source`` = ``h_a``, ``[P, irreps_hidden.dim]``) → ``[2P, irreps_hidden.dim]``, ``a → b``
    then ``b → a`` per pair (the rows of ``pairs.receivers``)."""
    frame_in, frame_out = layer.message_frames
    parts = layer.message_mlp.forward_frame(
        frame_in([h_target, h_source, pairs.edge_scalars], pairs.rotations),
        layer.attribute_scale,
        mirror=layer.pair_mirror,
    )
    back = [rotation.flatten(0, 1) for rotation in pairs.back_rotations]
    messages = frame_out.from_frame(parts, back).unflatten(0, (-1, 2))  # [P, 2, dim]
    return layer.weigh(messages, pairs.edge_scalars, pairs.edge_weights).flatten(0, 1)
