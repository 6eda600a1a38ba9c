"""segnn: E(3)-equivariant steerable graph neural networks for molecules."""

from segnn.api import EnergyModel, PropertyModel, load_model
from segnn.calculator import SEGNNCalculator
from segnn.config import Config, ConfigError, load_config
from segnn.models import SEGNN, build_model

__version__ = "0.1.0"

__all__ = [
    "SEGNN",
    "Config",
    "ConfigError",
    "EnergyModel",
    "PropertyModel",
    "SEGNNCalculator",
    "__version__",
    "build_model",
    "load_config",
    "load_model",
]
