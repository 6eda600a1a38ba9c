"""Noticing a diverging run: steps with a non-finite loss or gradient, and a loss far above the
level it had reached.

A step whose loss or gradient norm is not finite is skipped (the weights stay as they were);
:data:`NONFINITE_LIMIT` such steps in a row stop the run. Finite losses feed a running level
(an exponential average over ~10 steps); when it exceeds ``train.divergence_factor`` times the
lowest level it has reached, the run stops too. Every rank of a distributed run sees the same
(all-reduced) loss and gradient norm, so all take the same decision.
"""

from __future__ import annotations

import math
from typing import Any

NONFINITE_LIMIT = 3
"""Steps in a row with a non-finite loss or gradient after which the run stops."""
SMOOTHING = 0.9
"""Per-step decay of the running loss level."""


class TrainingDiverged(RuntimeError):
    """A run stopped because its loss or gradients diverged; the message says where and what
    to try."""


class DivergenceGuard:
    """Watches the training losses of one run; its state lives in the trainer's checkpointed
    ``training_state`` (keys ``loss_level``, ``lowest_loss_level``, ``nonfinite_steps``,
    ``last_finite_loss``, ``last_finite_step``), so a resumed run watches on."""

    def __init__(self, state: dict[str, Any], factor: float | None):
        self.state = state
        self.factor = factor
        for key, value in self.initial_state().items():
            state.setdefault(key, value)

    @staticmethod
    def initial_state() -> dict[str, Any]:
        return {
            "loss_level": None,
            "lowest_loss_level": None,
            "nonfinite_steps": 0,
            "last_finite_loss": None,
            "last_finite_step": None,
        }

    def accepts(self, loss: float, gradient_norm: float, step: int) -> bool:
        """Whether the step may update the weights; raises :class:`TrainingDiverged` (with the
        step's number in the message) when the run has diverged."""
        state = self.state
        if not (math.isfinite(loss) and math.isfinite(gradient_norm)):
            state["nonfinite_steps"] += 1
            if state["nonfinite_steps"] >= NONFINITE_LIMIT:
                what, value = (
                    ("loss", loss) if not math.isfinite(loss) else ("gradient", gradient_norm)
                )
                raise TrainingDiverged(
                    f"training diverged at step {step}: the {what} was {value} for "
                    f"{NONFINITE_LIMIT} steps in a row{self._last_finite()}"
                )
            return False
        state["nonfinite_steps"] = 0
        state["last_finite_loss"], state["last_finite_step"] = loss, step
        level = state["loss_level"]
        level = loss if level is None else SMOOTHING * level + (1 - SMOOTHING) * loss
        state["loss_level"] = level
        lowest = state["lowest_loss_level"]
        state["lowest_loss_level"] = level if lowest is None else min(lowest, level)
        if self.factor is not None and level > self.factor * state["lowest_loss_level"] > 0:
            raise TrainingDiverged(
                f"training diverged at step {step}: the training loss ({level:.3g}, averaged "
                f"over ~10 steps) rose over {self.factor:g} times the lowest level it had "
                f"reached ({state['lowest_loss_level']:.3g})"
            )
        return True

    def _last_finite(self) -> str:
        if self.state["last_finite_loss"] is None:
            return " (no step had a finite loss)"
        return (
            f" (the last finite loss was {self.state['last_finite_loss']:.4g}, "
            f"at step {self.state['last_finite_step']})"
        )
