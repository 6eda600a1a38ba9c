"""The ``cpu_kernels`` backend: paired edge frames with fused C++ gather and scatter kernels.

Around the message MLP of a paired layer, gathering both ends of every pair into its frame and
rotating every message back and summing it per atom are each one pass of a C++ kernel
(:mod:`segnn.o3.frame_kernels`) instead of a chain of PyTorch ops. The kernels differentiate
once and only with respect to the features, so this backend serves CPU training and inference
without forces and without radial weights (QM9-style models, the N-body system); where a
batch needs a gradient with respect to positions, or its graph is not paired, its layers take
the ``edge_frame`` path, the same numbers (in parts of ``edge_chunk`` edges). The fused kernels
take a whole graph at once. The kernels are built on first use (~10 s, cached).
"""

from __future__ import annotations

import weakref

import torch

from segnn.backends.base import EDGE_CHUNK, Capabilities
from segnn.backends.edge_frame import EdgeFrameBackend
from segnn.backends.geometry import Geometry
from segnn.o3 import frame_kernels
from segnn.o3.edge_pairs import receiver_index


class CpuKernelsBackend(EdgeFrameBackend):
    __doc__ = __doc__
    name = "cpu_kernels"
    capabilities = Capabilities(
        devices=("cpu",),
        forces=False,
        force_training=False,
        fullgraph=False,  # the C++ kernels are opaque to the tracer
        radial_weights=False,
    )

    @classmethod
    def runs_here(cls) -> bool:
        return frame_kernels.available()

    def __init__(self, compile: bool = False, edge_chunk: int | None = EDGE_CHUNK):
        super().__init__(compile, edge_chunk)
        self.tables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def frames(self, geometry: Geometry, lmax: int) -> Geometry:
        geometry = super().frames(geometry, lmax)
        if geometry.pairs is None:
            return geometry
        index = receiver_index(geometry.pairs.receivers, geometry.num_nodes)
        return geometry.with_frames(pairs=geometry.pairs._replace(receiver_index=index))

    def convolve(self, layer, h: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        pairs = geometry.pairs
        if (
            pairs is None
            or layer.radial_weights is not None
            or pairs.edge_weights is not None
            or not frame_kernels.usable(h, pairs.edge_scalars, pairs.rotations)
        ):
            return super().convolve(layer, h, geometry)
        if layer not in self.tables:
            self.tables[layer] = (
                frame_kernels.gather_table(layer.message_frames[0]),
                frame_kernels.scatter_table(layer.message_frames[1]),
            )
        (gather_table, widths), (scatter_table, width) = self.tables[layer]
        parts = frame_kernels.frame_gather(
            h,
            pairs.edge_scalars,
            pairs.target,
            pairs.source,
            pairs.receiver_index,
            pairs.rotations,
            gather_table,
            widths,
        )
        parts = layer.message_mlp.forward_frame(
            parts, layer.attribute_scale, mirror=layer.pair_mirror
        )
        return frame_kernels.frame_scatter_sum(
            parts, pairs.rotations, pairs.receivers, pairs.receiver_index, scatter_table, width
        )
