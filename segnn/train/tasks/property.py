"""QM9: one molecular property per molecule."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Batch

from segnn.config import Config
from segnn.data import RadiusGraphCollate
from segnn.data.qm9 import QM9, get_target
from segnn.models import PropertyModel, build_model
from segnn.train.plots import parity_plot
from segnn.train.tasks.losses import elementwise_loss, fit_atom_reference


class PropertyTask:
    """One QM9 property; metric: MAE in the literature's unit (e.g. meV)."""

    differentiates = False

    def __init__(self, config: Config):
        self.config = config
        data = config.data
        self.target = get_target(data.target)
        self.datasets = {
            split: QM9(split, data.target, data.root, data.split_seed, getattr(data.subset, split))
            for split in ("train", "val", "test")
        }
        self.collate = RadiusGraphCollate(data.cutoff)
        self.metrics = {"mae": self.target.report_unit}
        self.selection_metric = "mae"
        self.name = f"qm9/{data.target}"

    @staticmethod
    def run_label(config: Config) -> str:
        return config.data.target

    def build_model(self) -> PropertyModel:
        train = self.datasets["train"]
        targets = train.targets()
        reference = None
        if self.config.data.atom_references:
            reference = fit_atom_reference(train.composition(), train.elements(), targets)
            targets = targets - train.composition() @ reference[train.elements()]
        mean = float(targets.mean())
        mad = float((targets - mean).abs().mean())
        return build_model(self.config, mean=mean, mad=mad, atom_reference=reference)

    def loss(self, model: PropertyModel, batch: Batch) -> torch.Tensor:
        prediction = model.normalized(batch)
        target = model.normalized_targets(batch).to(prediction.dtype)
        return elementwise_loss(
            self.config.train.loss, prediction - target, batch.graph_loss_weight
        )

    @torch.no_grad()
    def predict(self, model: PropertyModel, batches: Iterable[Batch]) -> dict[str, torch.Tensor]:
        """``{"prediction", "target"}``: ``[S]`` each (float64, CPU), in batch order."""
        predictions, targets = [], []
        for batch in batches:
            predictions.append(model(batch).double().cpu())
            targets.append(batch.y[:, 0].double().cpu())
        return {"prediction": torch.cat(predictions), "target": torch.cat(targets)}

    def scores(self, predicted: dict[str, torch.Tensor]) -> dict[str, float]:
        """``{metric: value}`` of :meth:`predict`'s output (of one split, or gathered shards)."""
        error = (predicted["prediction"] - predicted["target"]).abs().mean()
        return {"mae": float(error) * self.target.report_factor}

    def report(
        self, model: PropertyModel, batches: Iterable[Batch], run_dir: Path
    ) -> dict[str, Any]:
        predicted = self.predict(model, batches)
        predictions, targets = predicted["prediction"], predicted["target"]
        factor = self.target.report_factor
        test_mae = float((predictions - targets).abs().mean()) * factor
        train_mean = float(self.datasets["train"].targets().mean())
        baseline = float((targets - train_mean).abs().mean()) * factor
        parity_plot(
            targets.numpy(),
            predictions.numpy(),
            run_dir / "parity_test.png",
            f"{self.target.description} ({self.target.unit}), test MAE {test_mae:.4g} "
            f"{self.target.report_unit}",
        )
        return {
            "target": self.target.name,
            "description": self.target.description,
            "unit": self.target.report_unit,
            "test_mae": test_mae,
            "mean_predictor_test_mae": baseline,
            "improvement_over_mean_predictor": baseline / test_mae if test_mae > 0 else math.inf,
            "num_test": len(targets),
        }

    @staticmethod
    def summary(results: dict[str, Any]) -> str:
        unit = results["unit"]
        return (
            f"test MAE ({results['target']}): {results['test_mae']:.4g} {unit} "
            f"(mean predictor: {results['mean_predictor_test_mae']:.4g} {unit}, "
            f"{results['improvement_over_mean_predictor']:.1f}x better)"
        )
