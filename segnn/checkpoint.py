"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, validated, and
turned back into the model they hold."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from segnn.config import ConfigError, load_config, without_retired_keys
from segnn.files import write_atomically
from segnn.models import TaskModel, build_model

FORMAT = "segnn-checkpoint-v2"
REQUIRED_KEYS = ("format", "segnn_version", "config", "model_state", "species")


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt or not written by segnn."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: serialised in memory, then written through a
    temporary file in the same folder and renamed, so an interrupted or failed save never
    leaves a truncated checkpoint behind. A full disk or an unwritable folder raises
    :class:`~segnn.files.WriteError` naming the file (the previous checkpoint intact)."""
    from segnn import __version__

    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "segnn_version": __version__, **payload}, buffer)
    write_atomically(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a segnn checkpoint; raises :class:`CheckpointError` with the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"{path} is not a readable segnn checkpoint (corrupt or foreign file): {error}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a segnn checkpoint (expected format {FORMAT!r})")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> TaskModel:
    """Rebuild a trained model from a loaded checkpoint dictionary (also one written before
    backends became a run-time choice: its retired config keys are dropped)."""
    try:
        config = load_config(without_retired_keys(payload["config"]))
    except ConfigError as error:
        raise CheckpointError(f"checkpoint config is not valid: {error}") from None
    model = build_model(config)
    try:
        model.load_state_dict(payload["model_state"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint weights do not fit its own config: {error}") from None
    return model
