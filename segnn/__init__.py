"""segnn: E(3)-equivariant steerable graph neural networks for molecules."""

from segnn.api import load_model
from segnn.calculator import SEGNNCalculator
from segnn.config import Config, ConfigError, load_config
from segnn.models import (
    SEGNN,
    DisplacementModel,
    EnergyModel,
    PropertyModel,
    build_model,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "SEGNN",
    "Config",
    "ConfigError",
    "DisplacementModel",
    "EnergyModel",
    "PropertyModel",
    "SEGNNCalculator",
    "__version__",
    "build_model",
    "load_config",
    "load_model",
    "use_backend",
]
