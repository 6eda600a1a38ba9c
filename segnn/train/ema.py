"""Exponential moving average (EMA) of a model's weights, for evaluation and checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class WeightAverage:
    """``w_ema ← d w_ema + (1 - d) w`` after every optimizer step, with the decay ramped up as
    ``d = min(decay, (1 + t) / (10 + t))`` over the first updates ``t`` so the average does not
    remember the random initialisation. :meth:`applied` swaps the averaged weights into the
    model for evaluation and puts the trained ones back afterwards.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie strictly between 0 and 1, got {decay}")
        self.decay = decay
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.parameters]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.parameters], 1.0 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights."""
        with torch.no_grad():
            trained = [p.detach().clone() for p in self.parameters]
            torch._foreach_copy_(self.parameters, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.parameters, trained)

    def state_dict(self) -> dict[str, Any]:
        return {"average": [a.cpu() for a in self.average], "updates": self.updates}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        average = state["average"]
        if len(average) != len(self.average) or any(
            a.shape != b.shape for a, b in zip(average, self.average)
        ):
            raise ValueError("the saved weight average does not fit this model")
        torch._foreach_copy_(self.average, [a.to(b.device) for a, b in zip(average, self.average)])
        self.updates = int(state["updates"])
