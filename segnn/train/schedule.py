"""Learning-rate schedules as pure functions of training progress (no state to checkpoint)."""

from __future__ import annotations

import math

from segnn.config import TrainConfig


def scheduled_epochs(config: TrainConfig, epoch_progress: float, elapsed_s: float) -> float:
    """How far the schedule is, in epochs: ``epoch_progress``, or, with a time budget
    (``max_minutes``) that is further along, ``epochs * elapsed_s / budget``. A run ends when
    either reaches the end, so with ``max_minutes`` the schedule fits the budget instead of
    being cut by it."""
    if config.max_minutes is None:
        return epoch_progress
    return max(epoch_progress, config.epochs * elapsed_s / (60.0 * config.max_minutes))


def learning_rate_factor(
    config: TrainConfig, epoch_progress: float, elapsed_s: float = 0.0
) -> float:
    """Multiplier of ``config.lr`` after ``epoch_progress`` epochs (fractional) and
    ``elapsed_s`` seconds of training.

    Linear warm-up over ``warmup_epochs``, then, with the schedule's progress ``e`` in epochs
    (:func:`scheduled_epochs`): ``multistep`` (× ``gamma`` at each milestone, given as a
    fraction of ``epochs``), ``cosine`` (to zero at ``epochs``), ``linear`` (straight to zero at
    ``epochs``) or ``constant``.
    """
    if config.warmup_epochs > 0 and epoch_progress < config.warmup_epochs:
        return (epoch_progress + 1e-3) / config.warmup_epochs
    progress_epochs = scheduled_epochs(config, epoch_progress, elapsed_s)
    if config.scheduler == "multistep":
        passed = sum(
            progress_epochs >= milestone * config.epochs for milestone in config.milestones
        )
        return config.gamma**passed
    if config.scheduler in ("cosine", "linear"):
        span = max(config.epochs - config.warmup_epochs, 1e-9)
        progress = min(max((progress_epochs - config.warmup_epochs) / span, 0.0), 1.0)
        if config.scheduler == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0
