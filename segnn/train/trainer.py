"""Fit, evaluate, checkpoint and resume a QM9 property model."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from ase.data import chemical_symbols
from tqdm import tqdm

from segnn.api import PropertyModel, model_from_checkpoint
from segnn.checkpoint import load_checkpoint, save_checkpoint
from segnn.config import Config, ConfigError, load_config
from segnn.data import RadiusGraphCollate
from segnn.data.qm9 import QM9, get_target
from segnn.models import SEGNN
from segnn.train.schedule import learning_rate_factor

METRICS_FIELDS = ["epoch", "step", "train_loss", "val_mae", "lr", "elapsed_s"]


def select_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"train.device {name!r} is not a torch device (use auto, cpu, cuda, cuda:1)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device asks for CUDA, but no CUDA device is available")
    return device


def fit_atom_reference(dataset: QM9) -> torch.Tensor:
    """Least-squares value per element, ``[119]`` (zeros for absent elements), such that the sum
    over a molecule's atoms best matches the training targets."""
    counts, targets = dataset.composition(), dataset.targets()
    present = counts.sum(0) > 0
    counts, elements = counts[:, present], dataset.elements()[present]
    # ridge-stabilised normal equations on an [elements x elements] system: bit-for-bit
    # repeatable (torch's lstsq is not) and solvable when element counts are collinear
    gram = counts.T @ counts + 1e-8 * torch.eye(len(elements), dtype=torch.float64)
    reference = torch.zeros(len(chemical_symbols), dtype=torch.float64)
    reference[elements] = torch.linalg.solve(gram, counts.T @ targets)
    return reference


def new_run_dir(config: Config) -> Path:
    name = (
        config.train.run_name
        or f"{config.data.dataset}_{config.data.target}_{time.strftime('%Y%m%d-%H%M%S')}"
    )
    run_dir = Path(config.train.runs_dir) / name
    suffix = 1
    while run_dir.exists():
        run_dir = Path(config.train.runs_dir) / f"{name}_{suffix}"
        suffix += 1
    return run_dir


class Trainer:
    """Trains a :class:`PropertyModel` on one QM9 target.

    The run directory holds ``config.yaml`` (resolved), ``metrics.csv``, ``last.pt`` (after every
    epoch and when stopped) and ``best.pt`` (best validation MAE), all written atomically. The
    order of training molecules in epoch ``e`` depends only on ``(seed, e)``, so a resumed run
    repeats exactly what an uninterrupted one would do, even from the middle of an epoch.
    """

    def __init__(self, config: Config, run_dir: Path, resume_from: dict[str, Any] | None = None):
        self.config = config
        self.run_dir = run_dir
        self.device = select_device(config.train.device)
        data = config.data
        self.target = get_target(data.target)
        subset = data.subset
        self.datasets = {
            split: QM9(split, data.target, data.root, data.split_seed, getattr(subset, split))
            for split in ("train", "val", "test")
        }
        self.collate = RadiusGraphCollate(data.cutoff)

        torch.manual_seed(config.seed)
        train_set = self.datasets["train"]
        atom_reference = fit_atom_reference(train_set) if data.atom_references else None
        train_targets = train_set.targets()
        if atom_reference is not None:
            train_targets = (
                train_targets - train_set.composition() @ atom_reference[train_set.elements()]
            )
        mean = float(train_targets.mean())
        mad = float((train_targets - mean).abs().mean())
        target_info = {
            "name": self.target.name,
            "unit": self.target.unit,
            "description": self.target.description,
            "report_unit": self.target.report_unit,
            "report_factor": self.target.report_factor,
        }
        self.model = PropertyModel(
            SEGNN(config.model), mean, mad, data.cutoff, target_info, atom_reference
        )
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay
        )
        self.state = {
            "epoch": 0,
            "batch_in_epoch": 0,
            "global_step": 0,
            "best_val_mae": math.inf,
            "evaluations_without_improvement": 0,
            "elapsed_s": 0.0,
            "finished": False,
        }
        if resume_from is not None:
            self.model.network.load_state_dict(resume_from["model_state"])
            self.model.atom_reference.copy_(resume_from["atom_reference"])
            self.model.mean = resume_from["normalization"]["mean"]
            self.model.mad = resume_from["normalization"]["mad"]
            self.optimizer.load_state_dict(resume_from["optimizer_state"])
            self.state.update(resume_from["training_state"])

    # ----------------------------------------------------------------------------- batches
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.datasets["train"]), generator=generator)

    def _batches(self, split: str, order: torch.Tensor | None = None, skip: int = 0):
        dataset = self.datasets[split]
        order = torch.arange(len(dataset)) if order is None else order
        size = self.config.train.batch_size
        for start in range(skip * size, len(order), size):
            yield self.collate([dataset[int(i)] for i in order[start : start + size]]).to(
                self.device
            )

    def _loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.config.train.loss == "l1":
            return (prediction - target).abs().mean()
        return (prediction - target).pow(2).mean()

    # ---------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(predictions, targets)`` for a split, float64 in the target's unit."""
        self.model.eval()
        predictions, targets = [], []
        for batch in self._batches(split):
            predictions.append(self.model(batch).double().cpu())
            targets.append(batch.y[:, 0].double().cpu())
        self.model.train()
        return torch.cat(predictions), torch.cat(targets)

    def mae(self, split: str) -> float:
        """Mean absolute error on ``split`` in the report unit (e.g. meV)."""
        predictions, targets = self.predict_split(split)
        return float((predictions - targets).abs().mean()) * self.target.report_factor

    # ------------------------------------------------------------------------- checkpointing
    def _payload(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "model_state": self.model.network.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "normalization": {"mean": self.model.mean, "mad": self.model.mad},
            "atom_reference": self.model.atom_reference.cpu(),
            "species": list(self.config.model.species),
            "target": self.model.target,
            "training_state": dict(self.state),
        }

    def _log_metrics(self, row: dict[str, Any]) -> None:
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRICS_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)

    # ---------------------------------------------------------------------------- training
    def fit(self, stop_after_epochs: int | None = None) -> None:
        """Train until ``train.epochs``, early stopping or the time budget; ``stop_after_epochs``
        ends this call after that many more completed epochs (a resumable interruption)."""
        train = self.config.train
        steps_per_epoch = math.ceil(len(self.datasets["train"]) / train.batch_size)
        started = time.monotonic() - self.state["elapsed_s"]
        epochs_this_call = 0
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
            )
            out_of_time = False
            for batch in progress:
                factor = learning_rate_factor(
                    train, epoch + self.state["batch_in_epoch"] / steps_per_epoch
                )
                for group in self.optimizer.param_groups:
                    group["lr"] = train.lr * factor
                prediction = self.model.normalized(batch)
                remainder = batch.y[:, 0] - self.model.reference(batch) - self.model.mean
                loss = self._loss(prediction, (remainder / self.model.mad).to(prediction.dtype))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if train.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip)
                self.optimizer.step()
                losses.append(loss.item())
                self.state["batch_in_epoch"] += 1
                self.state["global_step"] += 1
                progress.set_postfix(loss=f"{losses[-1]:.4f}")
                if (
                    train.max_minutes is not None
                    and time.monotonic() - started > 60 * train.max_minutes
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
                print(f"time budget of {train.max_minutes} min reached after {epoch + 1} epoch(s)")
                self.state["finished"] = True
            if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
                break
        if self.state["epoch"] >= train.epochs:
            self.state["finished"] = True
        save_checkpoint(self.run_dir / "last.pt", self._payload())

    def _end_of_epoch(self, epoch: int, losses: list[float], elapsed: float) -> None:
        train = self.config.train
        val_mae = self.mae("val")
        self.state["elapsed_s"] = elapsed
        improved = val_mae < self.state["best_val_mae"]
        if improved:
            self.state["best_val_mae"] = val_mae
            self.state["evaluations_without_improvement"] = 0
        else:
            self.state["evaluations_without_improvement"] += 1
        patience = train.early_stopping_patience
        if patience is not None and self.state["evaluations_without_improvement"] >= patience:
            print(f"early stopping: no better validation MAE for {patience} epochs")
            self.state["finished"] = True
        row = {
            "epoch": epoch + 1,
            "step": self.state["global_step"],
            "train_loss": f"{sum(losses) / max(len(losses), 1):.6g}",
            "val_mae": f"{val_mae:.6g}",
            "lr": f"{self.optimizer.param_groups[0]['lr']:.3g}",
            "elapsed_s": f"{elapsed:.1f}",
        }
        self._log_metrics(row)
        tqdm.write(
            f"epoch {epoch + 1}: train loss {row['train_loss']}, val MAE {val_mae:.4g} "
            f"{self.target.report_unit}{' (best)' if improved else ''}, {elapsed:.0f} s"
        )
        if improved:
            save_checkpoint(self.run_dir / "best.pt", self._payload())
        save_checkpoint(self.run_dir / "last.pt", self._payload())

    def test(self) -> dict[str, Any]:
        """Evaluate the best checkpoint on the test split; write ``results.json`` and plots."""
        from segnn.train.plots import learning_curves, parity_plot

        best = self.run_dir / "best.pt"
        model = (
            model_from_checkpoint(load_checkpoint(best)).to(self.device)
            if best.exists()
            else self.model
        )
        self.model, original = model, self.model
        predictions, targets = self.predict_split("test")
        self.model = original
        factor = self.target.report_factor
        test_mae = float((predictions - targets).abs().mean()) * factor
        train_mean = float(self.datasets["train"].targets().mean())
        baseline = float((targets - train_mean).abs().mean()) * factor
        results = {
            "target": self.target.name,
            "description": self.target.description,
            "unit": self.target.report_unit,
            "test_mae": test_mae,
            "mean_predictor_test_mae": baseline,
            "improvement_over_mean_predictor": baseline / test_mae if test_mae > 0 else math.inf,
            "best_val_mae": self.state["best_val_mae"],
            "epochs": self.state["epoch"] + (self.state["batch_in_epoch"] > 0),
            "steps": self.state["global_step"],
            "train_seconds": round(self.state["elapsed_s"], 1),
            "num_train": len(self.datasets["train"]),
            "num_test": len(targets),
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "device": str(self.device),
        }
        (self.run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        learning_curves(
            self.run_dir / "metrics.csv",
            self.run_dir / "learning_curves.png",
            self.target.report_unit,
        )
        parity_plot(
            targets.numpy(),
            predictions.numpy(),
            self.run_dir / "parity_test.png",
            f"{self.target.description} ({self.target.unit}), test MAE {test_mae:.4g} {self.target.report_unit}",
        )
        return results


def train_from_config(
    config: Config | None = None,
    resume_dir: str | Path | None = None,
    stop_after_epochs: int | None = None,
) -> dict[str, Any] | None:
    """Train a new run from ``config`` or resume the run in ``resume_dir``.

    Returns the test results once training has finished (``None`` if ``stop_after_epochs``
    interrupted it first; resume later with ``resume_dir``).
    """
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        payload = load_checkpoint(run_dir / "last.pt")
        config = load_config(payload["config"])
        trainer = Trainer(config, run_dir, resume_from=payload)
        print(
            f"resuming {run_dir} at epoch {trainer.state['epoch'] + 1}, step {trainer.state['global_step']}"
        )
    else:
        if config is None:
            raise ValueError("give a config or a run directory to resume")
        run_dir = new_run_dir(config)
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        trainer = Trainer(config, run_dir)
        print(f"run directory: {run_dir}")
    print(
        f"training {config.data.dataset}/{config.data.target} on {trainer.device}: "
        f"{len(trainer.datasets['train'])} train / {len(trainer.datasets['val'])} val / "
        f"{len(trainer.datasets['test'])} test molecules, "
        f"{sum(p.numel() for p in trainer.model.parameters()):,} parameters"
    )
    trainer.fit(stop_after_epochs=stop_after_epochs)
    if not trainer.state["finished"]:
        print(f"stopped; continue with: segnn train --resume {run_dir}")
        return None
    results = trainer.test()
    print(
        f"test MAE ({results['target']}): {results['test_mae']:.4g} {results['unit']} "
        f"(mean predictor: {results['mean_predictor_test_mae']:.4g} {results['unit']}, "
        f"{results['improvement_over_mean_predictor']:.1f}x better)"
    )
    return results
