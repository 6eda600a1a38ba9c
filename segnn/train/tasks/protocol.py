"""The one protocol every task follows, and the one way to evaluate a model on a task."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch_geometric.data import Batch, Data

from segnn.config import Config
from segnn.train import distributed


@runtime_checkable
class Task(Protocol):
    """What is learned from a config's ``data.dataset`` (:data:`segnn.train.tasks.TASKS`).

    The :class:`~segnn.train.Trainer` is the same for every task; a task supplies:

    * ``datasets`` — ``{"train", "val", "test"}`` → map-style datasets of ``Data`` items, and
      ``collate`` — list of items → ``Batch`` with its graph and its loss weights
      (:mod:`segnn.data.loss_weights`);
    * ``name`` (e.g. ``qm9/homo``), and ``run_label(config)`` (a static method: what run
      directories are named after, e.g. ``homo``);
    * ``metrics`` — ``{metric: unit}``; ``selection_metric`` picks best checkpoints and early
      stopping; ``differentiates`` — whether the loss takes derivatives of the model's output
      with respect to positions (forces, stress), which the backend must then support twice;
    * ``build_model()`` — the model wrapper, with statistics fitted on the training split;
    * ``loss(model, batch)`` — the normalised training loss of one batch, reduced with the
      batch's loss weights;
    * ``predict(model, batches)`` — predictions and references as CPU float64 tensors, and
      ``scores(predicted)`` — ``{metric: value}`` in report units (:func:`evaluate` joins them);
    * ``report(model, batches, run_dir)`` — test metrics, baselines and parity plots, and
      ``summary(results)`` — one line that says them.
    """

    name: str
    datasets: dict[str, Sequence[Data]]
    collate: Callable[[list[Data]], Batch]
    metrics: dict[str, str]
    selection_metric: str
    differentiates: bool

    @staticmethod
    def run_label(config: Config) -> str: ...

    def build_model(self) -> torch.nn.Module: ...

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor: ...

    def predict(
        self, model: torch.nn.Module, batches: Iterable[Batch]
    ) -> dict[str, torch.Tensor]: ...

    def scores(self, predicted: dict[str, torch.Tensor]) -> dict[str, float]: ...

    def report(
        self, model: torch.nn.Module, batches: Iterable[Batch], run_dir: Path
    ) -> dict[str, Any]: ...

    def summary(self, results: dict[str, Any]) -> str: ...


def evaluate(
    task: Task,
    model: torch.nn.Module,
    batches: Iterable[Batch],
    context: distributed.Context | None = None,
) -> dict[str, float]:
    """``{metric: value}`` of ``model`` on ``batches`` in the task's report units; with a
    distributed ``context`` the ranks' predictions are gathered first (every rank gets the
    whole split's scores)."""
    predicted = task.predict(model, batches)
    if context is not None:
        predicted = distributed.gather(predicted, context)
    return task.scores(predicted)
