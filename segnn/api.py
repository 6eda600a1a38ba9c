"""Serving trained models: ``load_model(path).predict(atoms)`` with units.

A thin facade: the models live in :mod:`segnn.models`, checkpoints in :mod:`segnn.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from segnn.checkpoint import load_checkpoint, model_from_checkpoint
from segnn.models import (
    DisplacementModel,
    EnergyModel,
    Prediction,
    PropertyModel,
    TaskModel,
    use_backend,
)

__all__ = [
    "DisplacementModel",
    "EnergyModel",
    "Prediction",
    "PropertyModel",
    "load_model",
]


def load_model(
    path: str | Path, device: str | torch.device = "cpu", backend: str = "auto"
) -> TaskModel:
    """Load a trained model from a segnn checkpoint (``best.pt`` / ``last.pt`` of a run): a
    :class:`PropertyModel` (QM9 properties), an :class:`EnergyModel` (energies and forces) or a
    :class:`DisplacementModel` (N-body). ``backend``: how it computes (:mod:`segnn.backends`;
    ``auto`` picks the fastest for the device that gives energy models their forces)."""
    model = model_from_checkpoint(load_checkpoint(path)).to(device).eval()
    use_backend(model, backend, forces=isinstance(model, EnergyModel))
    return model
