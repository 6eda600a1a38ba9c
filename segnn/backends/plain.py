"""The ``plain`` backend: segnn's own products, messages per edge.

Each layer runs PyG's ``propagate`` (``message`` per edge, ``aggregate`` by sum, ``update``) on
graphs of up to ``edge_chunk`` edges; larger graphs are convolved in parts
(:meth:`~segnn.backends.Backend.convolve`). Supports everything: any device, forces, training
on forces, radial weights, compiled node updates.
"""

from __future__ import annotations

import torch

from segnn.backends.base import Backend
from segnn.backends.geometry import Geometry
from segnn.backends.view import LayerView


class PlainBackend(Backend):
    __doc__ = __doc__
    name = "plain"

    def propagates(self, geometry: Geometry) -> bool:
        return self.edge_chunk is None or geometry.num_edges <= self.edge_chunk

    def messages(
        self, layer: LayerView, h: torch.Tensor, geometry: Geometry
    ) -> tuple[torch.Tensor, torch.Tensor]:
        source, target = geometry.edge_index
        messages = layer.message(
            h.index_select(0, target),
            h.index_select(0, source),
            geometry.edge_attr,
            geometry.edge_scalars,
            geometry.edge_weights,
            self.product_function(),
        )
        return messages, target
