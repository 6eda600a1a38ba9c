"""The ``cpu_kernels`` backend and its C++ kernels (``frame_kernels.cpp``, built on first use
by :mod:`segnn.extensions`; ``kernels.py`` wraps them in autograd functions)."""

from segnn.backends.cpu_kernels.backend import CpuKernelsBackend

__all__ = ["CpuKernelsBackend"]
