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
fastest by ``scripts/benchmark.py`` (docs/performance.md). Adding a backend: one folder here
with a :class:`~segnn.backends.base.Backend` subclass that reads layers only through their
:class:`~segnn.backends.view.LayerView`, and one :func:`register` call (the parity harness,
``tests/test_backends.py``, then runs it on every case it supports).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from segnn.backends.base import EDGE_CHUNK, Backend, Capabilities
from segnn.backends.cpu_kernels import CpuKernelsBackend
from segnn.backends.e3nn import E3nnBackend
from segnn.backends.edge_frame import EdgeFrameBackend
from segnn.backends.geometry import Geometry
from segnn.backends.plain import PlainBackend
from segnn.backends.view import LayerView, ProductStep

BACKENDS: dict[str, type[Backend]] = {
    backend.name: backend
    for backend in (E3nnBackend, PlainBackend, EdgeFrameBackend, CpuKernelsBackend)
}
PREFERENCE: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu_kernels", "edge_frame", "plain", "e3nn"),
    "cuda": ("edge_frame", "plain", "e3nn"),  # not measured on a GPU yet
}
BUILT_IN = frozenset(BACKENDS)
DEFAULT = "edge_frame"
"""What a model built without a choice uses: every device, dtype and derivative."""


def register(backend: type[Backend], preferred_on: Iterable[str] = ()) -> type[Backend]:
    """Make ``backend`` (a :class:`Backend` subclass) available by its ``name`` everywhere a
    backend is chosen (``use_backend``, ``train.backend``, ``load_model(backend=...)``, the
    calculator), and ``auto``'s first choice on the device types ``preferred_on``. Returns it
    (usable as a class decorator). Raises ``ValueError`` for a name already taken."""
    if not (isinstance(backend, type) and issubclass(backend, Backend)):
        raise TypeError(f"a backend is a subclass of segnn.backends.Backend, got {backend!r}")
    if backend.name in BACKENDS or backend.name == "auto":
        raise ValueError(f"a backend named {backend.name!r} is already registered")
    BACKENDS[backend.name] = backend
    for device in preferred_on:
        PREFERENCE[device] = (backend.name, *PREFERENCE.get(device, ()))
    return backend


def unregister(name: str) -> None:
    """Remove a backend added with :func:`register` (and its place in :data:`PREFERENCE`)."""
    if name in BUILT_IN:
        raise ValueError(f"backend {name!r} is built in")
    BACKENDS.pop(name, None)
    for device, order in PREFERENCE.items():
        PREFERENCE[device] = tuple(other for other in order if other != name)


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
    "LayerView",
    "PlainBackend",
    "ProductStep",
    "make_backend",
    "names",
    "register",
    "unregister",
]
