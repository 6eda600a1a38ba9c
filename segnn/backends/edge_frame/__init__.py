"""The ``edge_frame`` backend and everything it alone needs: edge rotations and frame layouts
(``frames.py``), both directions of an edge in one frame (``pairs.py``), products' effective
weights in the frame (``plan.py``), the message MLP there (``mlp.py``)."""

from segnn.backends.edge_frame.backend import EdgeFrameBackend, EdgeFrames

__all__ = ["EdgeFrameBackend", "EdgeFrames"]
