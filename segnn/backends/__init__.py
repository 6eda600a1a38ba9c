"""Backends: how a model computes, chosen at run time; what it computes stays the same.

=============== ========================================================== ==================
name            messages                                                   supports
=============== ========================================================== ==================
``e3nn``        per edge, e3nn's ``FullyConnectedTensorProduct`` (the      everything but
                reference)                                                 compile
``plain``       per edge, segnn's product                                  everything
``edge_frame``  in each edge's frame, one frame per pair of a paired graph everything
``cpu_kernels`` ``edge_frame`` with fused C++ gather/scatter kernels       CPU; no forces, no
                                                                           radial weights
=============== ========================================================== ==================

``auto`` takes the first backend of :data:`PREFERENCE` for the device that supports the
device, the dtype, the task (forces, training on forces) and the model: the order measured
fastest by ``scripts/benchmark.py`` (docs/performance.md). Adding a backend: one module here
with a :class:`~segnn.backends.base.Backend` subclass, one entry in :data:`BACKENDS` (and in
:data:`PREFERENCE` once measured), one line in ``tests/test_backends.py``.
"""

from __future__ import annotations

import torch

from segnn.backends.base import EDGE_CHUNK, Backend, Capabilities
from segnn.backends.cpu_kernels import CpuKernelsBackend
from segnn.backends.e3nn import E3nnBackend
from segnn.backends.edge_frame import EdgeFrameBackend
from segnn.backends.geometry import Geometry

BACKENDS: dict[str, type[Backend]] = {
    backend.name: backend for backend in (E3nnBackend, Backend, EdgeFrameBackend, CpuKernelsBackend)
}
PREFERENCE: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu_kernels", "edge_frame", "plain", "e3nn"),
    "cuda": ("edge_frame", "plain", "e3nn"),  # not measured on a GPU yet
}
DEFAULT = "edge_frame"
"""What a model built without a choice uses: every device, dtype and derivative."""


def names() -> list[str]:
    """The choices a user may give: ``auto`` and every backend's name."""
    return ["auto", *BACKENDS]


def make_backend(
    name: str = "auto",
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    forces: bool = False,
    force_training: bool = False,
    radial_weights: bool = False,
    compile: bool = False,
    edge_chunk: int | None = EDGE_CHUNK,
) -> Backend:
    """The backend ``name`` (or, for ``auto``, the preferred one that supports this use),
    compiled when ``compile`` and the backend allows it (``auto`` never picks a backend for
    being compilable), computing messages ``edge_chunk`` edges at a time
    (:meth:`Backend.convolve`). Raises ``ValueError`` naming what an explicitly chosen backend
    lacks."""
    device = torch.device(device)
    need = dict(
        device=device,
        dtype=dtype,
        forces=forces or force_training,
        force_training=force_training,
        radial_weights=radial_weights,
    )
    if name == "auto":
        for candidate in PREFERENCE.get(device.type, (DEFAULT,)):
            backend = BACKENDS[candidate]
            if not backend.capabilities.missing(**need) and backend.runs_here():
                return backend(compile and backend.capabilities.compile, edge_chunk)
        raise ValueError(f"no backend supports {device.type} with {dtype}")
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(names())}")
    backend = BACKENDS[name]
    missing = backend.capabilities.missing(**need, compile=compile)
    if missing:
        raise ValueError(f"backend {name!r} does not support {', '.join(missing)}")
    return backend(compile, edge_chunk)


__all__ = [
    "BACKENDS",
    "DEFAULT",
    "EDGE_CHUNK",
    "PREFERENCE",
    "Backend",
    "Capabilities",
    "CpuKernelsBackend",
    "E3nnBackend",
    "EdgeFrameBackend",
    "Geometry",
    "make_backend",
    "names",
]
