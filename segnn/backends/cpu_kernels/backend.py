"""The ``cpu_kernels`` backend: paired edge frames with fused C++ gather and scatter kernels.

Around the message MLP of a paired layer, gathering both ends of every pair into its frame and
rotating every message back and summing it per atom are each one pass of a C++ kernel
(:mod:`segnn.backends.cpu_kernels.kernels`) instead of a chain of PyTorch ops. The kernels
differentiate once and only with respect to the features, so this backend serves CPU training
and inference without forces and without radial weights (QM9-style models, the N-body system);
where a batch needs a gradient with respect to positions, or its graph is not paired, it hands
the layer to an ``edge_frame`` backend it holds, the same numbers (in parts of ``edge_chunk``
edges). The fused kernels take a whole graph at once. They are built on first use (~10 s,
cached once per machine).
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import torch

from segnn.backends.base import EDGE_CHUNK, Backend, Capabilities
from segnn.backends.cpu_kernels import kernels
from segnn.backends.edge_frame import EdgeFrameBackend, EdgeFrames
from segnn.backends.geometry import Geometry
from segnn.backends.view import LayerView


class KernelFrames(NamedTuple):
    """The edge frames of a batch and, for paired graphs, the message rows sorted by receiver
    (:func:`~segnn.backends.cpu_kernels.kernels.receiver_index`)."""

    frames: EdgeFrames
    receiver_index: tuple[torch.Tensor, torch.Tensor] | None


class CpuKernelsBackend(Backend):
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
        return kernels.available()

    def __init__(self, compile: bool = False, edge_chunk: int | None = EDGE_CHUNK):
        super().__init__(compile, edge_chunk)
        self.edge_frame = EdgeFrameBackend(compile, edge_chunk)  # where the kernels do not apply
        self.tables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def prepare_layer(self, layer: LayerView, dtype: torch.dtype, device: torch.device) -> None:
        self.edge_frame.prepare_layer(layer, dtype, device)

    def frames(self, geometry: Geometry, lmax: int) -> Geometry:
        frames = self.edge_frame.frames(geometry, lmax).frames
        index = None
        if frames.pairs is not None:
            index = kernels.receiver_index(frames.pairs.receivers, geometry.num_nodes)
        return geometry.with_frames(KernelFrames(frames, index))

    def convolve(self, layer: LayerView, h: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        (pairs, _), receiver_index = geometry.frames
        if (
            pairs is None
            or layer.radial_weights
            or pairs.edge_weights is not None
            or not kernels.usable(h, pairs.edge_scalars, pairs.rotations)
        ):
            fallback = geometry.with_frames(geometry.frames.frames)
            return self.edge_frame.convolve(layer, h, fallback)
        mlp = self.edge_frame.mlp(layer)
        if layer not in self.tables:
            self.tables[layer] = (
                kernels.gather_table(mlp.concat),
                kernels.scatter_table(mlp.layout),
            )
        (gather_table, widths), (scatter_table, width) = self.tables[layer]
        parts = kernels.frame_gather(
            h,
            pairs.edge_scalars,
            pairs.target,
            pairs.source,
            receiver_index,
            pairs.rotations,
            gather_table,
            widths,
        )
        return kernels.frame_scatter_sum(
            mlp(parts, paired=True),
            pairs.rotations,
            pairs.receivers,
            receiver_index,
            scatter_table,
            width,
        )
