"""segnn: E(3)-equivariant steerable graph neural networks for molecules.

The names below are imported on first use, so that ``import segnn.deploy`` (running an exported
model) loads torch and nothing of segnn's model code.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_WHERE = {
    "SEGNN": "segnn.models",
    "DisplacementModel": "segnn.models",
    "EnergyModel": "segnn.models",
    "PropertyModel": "segnn.models",
    "build_model": "segnn.models",
    "use_backend": "segnn.models",
    "Config": "segnn.config",
    "ConfigError": "segnn.config",
    "load_config": "segnn.config",
    "load_model": "segnn.api",
    "SEGNNCalculator": "segnn.calculator",
}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'segnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
