"""Learning-rate schedules as pure functions of training progress (no state to checkpoint)."""

from __future__ import annotations

import math

from segnn.config import TrainConfig


def learning_rate_factor(config: TrainConfig, epoch_progress: float) -> float:
    """Multiplier of ``config.lr`` after ``epoch_progress`` epochs (fractional).

    Linear warm-up over ``warmup_epochs``, then ``multistep`` (× ``gamma`` at each milestone,
    given as a fraction of ``epochs``), ``cosine`` (to zero at ``epochs``) or ``constant``.
    """
    if config.warmup_epochs > 0 and epoch_progress < config.warmup_epochs:
        return (epoch_progress + 1e-3) / config.warmup_epochs
    if config.scheduler == "multistep":
        passed = sum(epoch_progress >= milestone * config.epochs for milestone in config.milestones)
        return config.gamma**passed
    if config.scheduler == "cosine":
        span = max(config.epochs - config.warmup_epochs, 1e-9)
        progress = min(max((epoch_progress - config.warmup_epochs) / span, 0.0), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0
