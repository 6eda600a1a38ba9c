"""Training: the trainer loop, schedules and plots."""

from segnn.train.trainer import Trainer, train_from_config

__all__ = ["Trainer", "train_from_config"]
