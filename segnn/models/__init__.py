"""Models: the SEGNN layer and network, and the task wrappers around it."""

from segnn.models.layer import SEGNNLayer
from segnn.models.segnn import SEGNN, use_backend
from segnn.models.wrappers import (
    AtomisticModel,
    DisplacementModel,
    EnergyModel,
    Prediction,
    PropertyModel,
    TaskModel,
    build_model,
)

__all__ = [
    "SEGNN",
    "AtomisticModel",
    "DisplacementModel",
    "EnergyModel",
    "Prediction",
    "PropertyModel",
    "SEGNNLayer",
    "TaskModel",
    "build_model",
    "use_backend",
]
