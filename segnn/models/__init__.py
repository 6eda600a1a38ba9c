"""Models: the SEGNN layer and network."""

from segnn.models.compile import compile_layers
from segnn.models.layer import SEGNNLayer
from segnn.models.segnn import SEGNN, build_model

__all__ = ["SEGNN", "SEGNNLayer", "build_model", "compile_layers"]
