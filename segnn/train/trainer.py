"""Fit, evaluate, checkpoint and resume a model on a task (QM9 property, energies and forces)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from segnn.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from segnn.config import Config, ConfigError, load_config, without_retired_keys
from segnn.data.loss_weights import with_loss_weights
from segnn.files import append_text, require_writable, write_atomically
from segnn.models import use_backend
from segnn.train import distributed
from segnn.train.distributed import Context
from segnn.train.divergence import DivergenceGuard, TrainingDiverged
from segnn.train.ema import WeightAverage
from segnn.train.schedule import learning_rate_factor
from segnn.train.signals import TrainingStopped, stopping_on_signals
from segnn.train.tasks import TASKS, evaluate, make_task

COMPILE_MIN_STEPS = 5000
"""Planned training steps from which ``train.compile: null`` compiles: the saving per step is
small next to a cold compilation (docs/performance.md), so only long runs get it."""


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when available (the ``local_rank``-th GPU), else CPU; otherwise the named
    device (``cuda`` on several ranks: each rank's own GPU)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"train.device {name!r} is not a torch device (use auto, cpu, cuda, cuda:1)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device asks for CUDA, but no CUDA device is available")
    return device


def new_run_dir(config: Config) -> Path:
    """A run directory not yet taken: ``train.run_name``, or data set, what its task learns
    and the time."""
    label = TASKS[config.data.dataset].run_label(config)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = config.train.run_name or f"{config.data.dataset}_{label}_{stamp}"
    run_dir = Path(config.train.runs_dir) / name
    suffix = 1
    while run_dir.exists():
        run_dir = Path(config.train.runs_dir) / f"{name}_{suffix}"
        suffix += 1
    return run_dir


def make_optimizer(parameters, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam; the fused kernel where this torch has it on every device (≥ 2.4): one update for
    all of a model's weight tensors (382 in the paper's QM9 model) instead of a loop over them."""
    fused = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 4)
    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, fused=fused or None)


def batches(
    dataset,
    collate,
    batch_size: int,
    device: torch.device,
    order: torch.Tensor | None = None,
    skip: int = 0,
    dtype: torch.dtype = torch.float32,
    context: Context | None = None,
):
    """Batches of ``dataset`` items in ``order`` (default: as stored), ``batch_size`` at a
    time, collated and moved to ``device``; the first ``skip`` batches left out. With ``dtype``
    float64 every floating tensor is made float64 (float32 leaves them as stored: targets stay
    float64). With a distributed ``context`` each batch is this rank's share, whose loss
    weights count the whole batch's graphs, atoms and stresses (:mod:`segnn.data.loss_weights`,
    :mod:`segnn.train.distributed`)."""
    order = torch.arange(len(dataset)) if order is None else order
    shared = context is not None and context.distributed
    for start in range(skip * batch_size, len(order), batch_size):
        items = [dataset[int(i)] for i in order[start : start + batch_size]]
        batch = collate(list(distributed.shard(items, context)) if shared else items)
        if shared:  # the loss divides by the whole batch's counts
            stressed = sum(int(item.has_stress) for item in items if "has_stress" in item)
            atoms = sum(item.num_nodes for item in items)
            batch = with_loss_weights(batch, len(items), atoms, stressed)
        yield in_precision(batch, dtype).to(device)


def in_precision(data, dtype: torch.dtype):
    """``data`` (a batch or a model) with its floating tensors in float64 when ``dtype`` is
    float64; as it is otherwise (float32 keeps float64 targets and statistics)."""
    if dtype != torch.float64:
        return data
    if isinstance(data, torch.nn.Module):
        return data.double()
    return data.apply(lambda tensor: tensor.double() if tensor.is_floating_point() else tensor)


class Objective(torch.nn.Module):
    """The training loss of ``task`` on ``model`` as a module, ``forward(batch) -> loss``: what
    ``DistributedDataParallel`` wraps, so that the whole loss (forces included) runs inside its
    forward."""

    def __init__(self, task, model: torch.nn.Module):
        super().__init__()
        self.task = task
        self.model = model

    def forward(self, batch) -> torch.Tensor:
        return self.task.loss(self.model, batch)


class Trainer:
    """Trains the model of a task (:mod:`segnn.train.tasks`) with Adam.

    The run directory holds ``config.yaml`` (resolved), ``metrics.csv``, ``last.pt`` (after every
    epoch and when stopped) and ``best.pt`` (best validation ``task.selection_metric``), all
    written atomically. The order of training items in epoch ``e`` depends only on
    ``(seed, e)``, so a resumed run repeats exactly what an uninterrupted one would do, even from
    the middle of an epoch. With a distributed ``context`` (``torchrun``) it is one rank of a
    data-parallel job (:mod:`segnn.train.distributed`).
    """

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        resume_from: dict[str, Any] | None = None,
        context: Context | None = None,
    ):
        self.config = config
        self.run_dir = run_dir
        self.context = context or Context()
        self.device = select_device(config.train.device, self.context.local_rank)
        self.task = make_task(config)
        self.datasets = self.task.datasets
        self.collate = self.task.collate
        torch.manual_seed(config.seed)
        self.dtype = getattr(torch, config.train.dtype)
        self.model = in_precision(self.task.build_model(), self.dtype).to(self.device)
        self.backend = self.use_backend(self.model)
        self.objective: torch.nn.Module = Objective(self.task, self.model)
        if self.context.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.objective = DistributedDataParallel(
                self.objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # e.g. outputs no path reaches
                broadcast_buffers=False,  # the buffers (statistics) never change in training
            )
        self.optimizer = make_optimizer(
            self.model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay
        )
        decay = config.train.ema_decay
        self.weight_average = WeightAverage(self.model, decay) if decay is not None else None
        self.metrics_fields = [
            "epoch",
            "step",
            "train_loss",
            *(f"val_{name}" for name in self.task.metrics),
            "lr",
            "elapsed_s",
        ]
        self.state = {
            "epoch": 0,
            "batch_in_epoch": 0,
            "global_step": 0,
            "best_val": math.inf,
            "best_epoch": None,
            "evaluations_without_improvement": 0,
            "elapsed_s": 0.0,
            "finished": False,
        }
        if resume_from is not None:
            # with an EMA, model_state holds the averaged weights and trained_state the others
            self.model.load_state_dict(resume_from.get("trained_state", resume_from["model_state"]))
            self.optimizer.load_state_dict(resume_from["optimizer_state"])
            if self.weight_average is not None:
                self.weight_average.load_state_dict(resume_from["weight_average"])
            self.state.update(resume_from["training_state"])
        self.guard = DivergenceGuard(self.state, config.train.divergence_factor)
        self.stop_signal: int | None = None
        """Set by :func:`stopping_on_signals` (SIGTERM, SIGINT): the run saves ``last.pt`` after
        the current step and raises :class:`TrainingStopped`."""

    def use_backend(self, model: torch.nn.Module, training: bool = True):
        """Give ``model`` the backend of ``train.backend`` for this task: forces and second
        derivatives when it trains on forces or stress (then nothing is compiled), else compiled
        node updates when ``training`` and :meth:`compiles`."""
        force_training = self.task.differentiates
        return use_backend(
            model,
            self.config.train.backend,
            force_training=force_training,
            compile=training and not force_training and self.compiles(),
        )

    def compiles(self) -> bool:
        """``train.compile``, or where it is ``null``, whether the run is long enough for the
        compilation's warm-up to pay off (:data:`COMPILE_MIN_STEPS` planned steps, no budget
        under 30 min)."""
        train = self.config.train
        if train.compile is not None:
            return train.compile
        steps = train.epochs * math.ceil(len(self.datasets["train"]) / train.batch_size)
        return steps >= COMPILE_MIN_STEPS and (train.max_minutes or math.inf) >= 30

    # ----------------------------------------------------------------------------- batches
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.datasets["train"]), generator=generator)

    def _batches(self, split: str, order: torch.Tensor | None = None, skip: int = 0):
        """Training batches of ``split`` in ``order``; on several ranks, each rank's share."""
        size = self.config.train.batch_size
        dataset = self.datasets[split]
        return batches(
            dataset, self.collate, size, self.device, order, skip, self.dtype, self.context
        )

    def _split_batches(self, split: str):
        """This rank's contiguous share of ``split`` (all of it in one process), for evaluation."""
        dataset = self.datasets[split]
        order = torch.as_tensor(distributed.shard(range(len(dataset)), self.context))
        size = self.config.train.batch_size
        return batches(dataset, self.collate, size, self.device, order, dtype=self.dtype)

    # ---------------------------------------------------------------------------- evaluation
    def evaluated_weights(self) -> contextlib.AbstractContextManager:
        """The weights that are evaluated and saved as ``model_state``: the EMA (``train.ema_decay``)
        when there is one, else the trained weights."""
        if self.weight_average is None:
            return contextlib.nullcontext()
        return self.weight_average.applied()

    def evaluate(self, split: str) -> dict[str, float]:
        """``{metric: value}`` on ``split`` in the task's report units (e.g. meV)."""
        self.model.eval()
        with self.evaluated_weights():
            scores = evaluate(self.task, self.model, self._split_batches(split), self.context)
        self.model.train()
        return scores

    # ------------------------------------------------------------------------- checkpointing
    def _payload(self) -> dict[str, Any]:
        def weights() -> dict[str, torch.Tensor]:  # copies: the EMA swaps weights in place
            return {
                key: value.detach().to("cpu", copy=True)
                for key, value in self.model.state_dict().items()
            }

        payload = {"config": self.config.to_dict()}
        if self.weight_average is not None:
            payload["trained_state"] = weights()
            payload["weight_average"] = self.weight_average.state_dict()
        with self.evaluated_weights():
            payload["model_state"] = weights()
        return payload | {
            "optimizer_state": self.optimizer.state_dict(),
            "species": list(self.config.model.species),
            "target": self.model.target,
            "training_state": dict(self.state),
        }

    def _log_metrics(self, row: dict[str, Any]) -> None:
        if not self.context.main:
            return
        path = self.run_dir / "metrics.csv"
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.metrics_fields)
        if not path.exists():
            writer.writeheader()
        writer.writerow(row)
        append_text(path, text.getvalue())

    def _elapsed(self, started: float) -> float:
        """Seconds since ``started`` by rank 0's clock (every rank takes the same decisions)."""
        return distributed.broadcast_seconds(time.monotonic() - started, self.context)

    def _print(self, message: str) -> None:
        if self.context.main:
            tqdm.write(message)

    # ---------------------------------------------------------------------------- training
    def fit(self, stop_after_epochs: int | None = None) -> None:
        """Train until ``train.epochs``, early stopping or the time budget; ``stop_after_epochs``
        ends this call after that many more completed epochs (a resumable interruption).

        A new run first saves its initial weights as ``best.pt`` (replaced at the first
        validation), so that even a run that diverges at once leaves one. Raises
        :class:`~segnn.train.divergence.TrainingDiverged` when the run diverges (the
        checkpoints from before it kept) and :class:`TrainingStopped` after a signal
        (``last.pt`` saved at the step it stopped)."""
        train = self.config.train
        steps_per_epoch = math.ceil(len(self.datasets["train"]) / train.batch_size)
        started = time.monotonic() - self.state["elapsed_s"]
        epochs_this_call = 0
        if self.state["global_step"] == 0:  # the same decision on every rank
            self._save("best.pt")
        self.model.train()
        while self.state["epoch"] < train.epochs and not self.state["finished"]:
            epoch = self.state["epoch"]
            order = self._epoch_order(epoch)
            losses = []
            progress = tqdm(
                self._batches("train", order, skip=self.state["batch_in_epoch"]),
                total=steps_per_epoch,
                initial=self.state["batch_in_epoch"],
                desc=f"epoch {epoch + 1}/{train.epochs}",
                leave=False,
                disable=not self.context.main,
            )
            out_of_time = False
            for batch in progress:
                elapsed = self._elapsed(started)
                factor = learning_rate_factor(
                    train, epoch + self.state["batch_in_epoch"] / steps_per_epoch, elapsed
                )
                for group in self.optimizer.param_groups:
                    group["lr"] = train.lr * factor
                loss, stop = self._step(batch)
                if loss is not None:
                    losses.append(loss)
                    progress.set_postfix(loss=f"{loss:.4f}")
                if stop:
                    progress.close()
                    self._stop(time.monotonic() - started)
                if (
                    train.max_minutes is not None
                    and self._elapsed(started) > 60 * train.max_minutes
                ):
                    out_of_time = True
                    break
            progress.close()
            if not out_of_time:
                self.state["epoch"] += 1
                self.state["batch_in_epoch"] = 0
            self._end_of_epoch(epoch, losses, time.monotonic() - started)
            epochs_this_call += 1
            if out_of_time:
                self._print(
                    f"time budget of {train.max_minutes} min reached after {epoch + 1} epoch(s)"
                )
                self.state["finished"] = True
            if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
                break
        if self.state["epoch"] >= train.epochs:
            self.state["finished"] = True
        self._save("last.pt")

    def _step(self, batch) -> tuple[float | None, bool]:
        """One optimisation step on ``batch``: the loss summed over the ranks (``None`` for a
        step skipped for a non-finite loss or gradient) and whether a rank was signalled to
        stop. Raises :class:`~segnn.train.divergence.TrainingDiverged`."""
        clip = self.config.train.grad_clip
        loss = self.objective(batch)
        self.optimizer.zero_grad(set_to_none=True)
        # each rank's loss is its share of the global batch's; DDP averages gradients
        (loss * self.context.world_size).backward()
        norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), math.inf if clip is None else clip
        )
        total, stops = distributed.totals(
            loss.item(), float(self.stop_signal is not None), context=self.context
        )
        self.state["global_step"] += 1
        self.state["batch_in_epoch"] += 1
        try:
            accepted = self.guard.accepts(total, float(norm), self.state["global_step"])
        except TrainingDiverged as error:
            raise TrainingDiverged(f"{error}; {self._divergence_advice()}") from None
        if not accepted:
            return None, stops > 0
        self.optimizer.step()
        if self.weight_average is not None:
            self.weight_average.update()
        return total, stops > 0

    def _divergence_advice(self) -> str:
        """What was kept and what to try, for a diverged run's message."""
        train = self.config.train
        best = self.state.get("best_epoch")
        kept = f"best.pt in {self.run_dir} holds " + (
            f"epoch {best}" if best else "the initial weights (no epoch finished)"
        )
        clip = (
            f"a lower train.grad_clip (now {train.grad_clip:g})"
            if train.grad_clip is not None
            else "train.grad_clip (e.g. 10)"
        )
        return f"{kept}; try a lower train.lr (now {train.lr:g}) or {clip}"

    def _stop(self, elapsed: float) -> None:
        """Save ``last.pt`` at this step boundary and raise :class:`TrainingStopped`."""
        self.state["elapsed_s"] = elapsed
        self._save("last.pt")
        name = signal.Signals(self.stop_signal).name if self.stop_signal else "another rank"
        raise TrainingStopped(
            f"stopped by {name} at step {self.state['global_step']}; last.pt saved; continue "
            f"with: segnn train --resume {self.run_dir}",
            self.stop_signal or signal.SIGTERM,
        )

    def _end_of_epoch(self, epoch: int, losses: list[float], elapsed: float) -> None:
        """Validate after epoch ``epoch``, log, checkpoint."""
        train = self.config.train
        metrics = self.evaluate("val")
        broken = {name: value for name, value in metrics.items() if not math.isfinite(value)}
        if broken:
            name, value = next(iter(broken.items()))
            raise TrainingDiverged(
                f"training diverged by step {self.state['global_step']} (epoch {epoch + 1}): "
                f"the validation {name} is {value}; {self._divergence_advice()}"
            )
        selected = metrics[self.task.selection_metric]
        self.state["elapsed_s"] = elapsed
        improved = selected < self.state["best_val"]
        if improved:
            self.state["best_val"] = selected
            self.state["best_epoch"] = epoch + 1
            self.state["evaluations_without_improvement"] = 0
        else:
            self.state["evaluations_without_improvement"] += 1
        patience = train.early_stopping_patience
        if patience is not None and self.state["evaluations_without_improvement"] >= patience:
            self._print(
                f"early stopping: no better validation {self.task.selection_metric} for {patience} epochs"
            )
            self.state["finished"] = True
        row = {
            "epoch": epoch + 1,
            "step": self.state["global_step"],
            "train_loss": f"{sum(losses) / max(len(losses), 1):.6g}",
            **{f"val_{name}": f"{value:.6g}" for name, value in metrics.items()},
            "lr": f"{self.optimizer.param_groups[0]['lr']:.3g}",
            "elapsed_s": f"{elapsed:.1f}",
        }
        self._log_metrics(row)
        described = ", ".join(
            f"val {name} {value:.4g} {self.task.metrics[name]}" for name, value in metrics.items()
        )
        self._print(
            f"epoch {epoch + 1}: train loss {row['train_loss']}, {described}"
            f"{' (best)' if improved else ''}, {elapsed:.0f} s"
        )
        if improved:
            self._save("best.pt")
        self._save("last.pt")

    def _save(self, name: str) -> None:
        """Write checkpoint ``name`` (rank 0 only; the others wait for it)."""
        if self.context.main:
            save_checkpoint(self.run_dir / name, self._payload())
        distributed.barrier(self.context)

    def test(self) -> dict[str, Any]:
        """Evaluate the best checkpoint on the whole test split; write ``results.json`` and
        plots (rank 0 alone: call it there)."""
        from segnn.train.plots import learning_curves

        best = self.run_dir / "best.pt"
        test = batches(
            self.datasets["test"],
            self.collate,
            self.config.train.batch_size,
            self.device,
            dtype=self.dtype,
        )
        if best.exists():
            model = model_from_checkpoint(load_checkpoint(best))
            model = in_precision(model, self.dtype).to(self.device).eval()
            self.use_backend(model, training=False)
            results = self.task.report(model, test, self.run_dir)
        else:
            model = self.model.eval()
            with self.evaluated_weights():
                results = self.task.report(model, test, self.run_dir)
        results.update(
            {
                f"best_val_{self.task.selection_metric}": self.state["best_val"],
                "epochs": self.state["epoch"] + (self.state["batch_in_epoch"] > 0),
                "steps": self.state["global_step"],
                "train_seconds": round(self.state["elapsed_s"], 1),
                "num_train": len(self.datasets["train"]),
                "num_parameters": sum(p.numel() for p in model.parameters()),
                "device": str(self.device),
            }
        )
        broken = [
            f"{key} = {value}"
            for key, value in results.items()
            if isinstance(value, float) and not math.isfinite(value)
        ]
        if broken:
            raise TrainingDiverged(
                f"the test of {best.name if best.exists() else 'the last weights'} gave "
                f"{', '.join(broken)}: no result is reported; {self._divergence_advice()}"
            )
        write_atomically(
            self.run_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode()
        )
        learning_curves(
            self.run_dir / "metrics.csv",
            self.run_dir / "learning_curves.png",
            {f"val_{name}": unit for name, unit in self.task.metrics.items()},
        )
        return results


def resume_payload(run_dir: Path) -> dict[str, Any]:
    """The checkpoint a run resumes from: ``last.pt``, or where that is missing or corrupt,
    ``best.pt`` (with a message; the run repeats the epochs since its best one). Raises
    :class:`~segnn.checkpoint.CheckpointError` when neither loads, and
    :class:`~segnn.files.WriteError` when the run directory is not writable."""
    try:
        payload = load_checkpoint(run_dir / "last.pt")
    except CheckpointError as error:
        try:
            payload = load_checkpoint(run_dir / "best.pt")
        except CheckpointError as best_error:
            raise CheckpointError(f"{error}; and {best_error}") from None
        state = payload.get("training_state", {})
        print(
            f"{error}; resuming from best.pt instead (epoch {state.get('epoch', '?')}, "
            f"step {state.get('global_step', '?')})",
            file=sys.stderr,
        )
    require_writable(run_dir)
    return payload


def train_from_config(
    config: Config | None = None,
    resume_dir: str | Path | None = None,
    stop_after_epochs: int | None = None,
) -> dict[str, Any] | None:
    """Train a new run from ``config`` or resume the run in ``resume_dir``; under ``torchrun``
    every rank calls it and they train together (:mod:`segnn.train.distributed`).

    Returns the test results once training has finished (``None`` if ``stop_after_epochs``
    interrupted it first, and on ranks other than 0; resume later with ``resume_dir``).
    """
    if resume_dir is not None:
        payload = resume_payload(Path(resume_dir))
        config = load_config(without_retired_keys(payload["config"]))
    elif config is None:
        raise ValueError("give a config or a run directory to resume")
    use_cuda = select_device(config.train.device).type == "cuda"
    context = distributed.start(use_cuda)
    say = print if context.main else (lambda *_: None)
    try:
        if resume_dir is not None:
            run_dir = Path(resume_dir)
            trainer = Trainer(config, run_dir, resume_from=payload, context=context)
            say(
                f"resuming {run_dir} at epoch {trainer.state['epoch'] + 1}, "
                f"step {trainer.state['global_step']}"
            )
        else:
            run_dir = None
            if context.main:
                require_writable(config.train.runs_dir)
                run_dir = new_run_dir(config)
                run_dir.mkdir(parents=True)
                text = yaml.safe_dump(config.to_dict(), sort_keys=False)
                write_atomically(run_dir / "config.yaml", text.encode())
            run_dir = distributed.broadcast(run_dir, context)
            trainer = Trainer(config, run_dir, context=context)
            say(f"run directory: {run_dir}")
        ranks = f" x {context.world_size} processes" if context.distributed else ""
        say(
            f"training {trainer.task.name} on {trainer.device}{ranks}: "
            f"{len(trainer.datasets['train'])} train / {len(trainer.datasets['val'])} val / "
            f"{len(trainer.datasets['test'])} test structures, "
            f"{sum(p.numel() for p in trainer.model.parameters()):,} parameters"
        )
        try:
            with stopping_on_signals(trainer):
                trainer.fit(stop_after_epochs=stop_after_epochs)
        except TrainingDiverged:
            raise
        except RuntimeError as error:
            if not context.distributed:
                raise
            raise distributed.DistributedError(
                f"rank {context.rank} of {context.world_size} lost the other processes (one "
                f"stopped, or a step took longer than ${distributed.TIMEOUT_ENV}): {error}"
            ) from error
        if not trainer.state["finished"]:
            say(f"stopped; continue with: segnn train --resume {run_dir}")
            return None
        results = trainer.test() if context.main else None
        if results is not None:
            say(trainer.task.summary(results))
        distributed.barrier(context)
        return results
    finally:
        distributed.stop()
