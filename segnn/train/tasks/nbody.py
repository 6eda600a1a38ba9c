"""The charged N-body system: positions 1,000 steps ahead."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Batch

from segnn.config import Config
from segnn.data.nbody import NUM_PARTICLES, FullGraphCollate, NBody
from segnn.models import DisplacementModel, build_model
from segnn.train.plots import parity_plot
from segnn.train.tasks.losses import elementwise_loss


class NBodyTask:
    """Charged N-body system: predict positions 1,000 steps ahead; metric: mean squared error
    of the coordinates (the literature's "MSE", e.g. SEGNN .0043, EGNN .0070)."""

    differentiates = False

    def __init__(self, config: Config):
        self.config = config
        data = config.data
        self.datasets = {
            split: NBody(
                split,
                data.root,
                subset=getattr(data.subset, split),
                centered_positions=data.centered_positions,
            )
            for split in ("train", "val", "test")
        }
        self.collate = FullGraphCollate()
        self.metrics = {"mse": ""}
        self.selection_metric = "mse"
        self.name = "nbody/charged"

    @staticmethod
    def run_label(config: Config) -> str:
        return "charged"

    def build_model(self) -> DisplacementModel:
        return build_model(self.config)

    def loss(self, model: DisplacementModel, batch: Batch) -> torch.Tensor:
        prediction = model(batch)
        difference = prediction - batch.y.to(prediction.dtype)
        return elementwise_loss(self.config.train.loss, difference, batch.atom_loss_weight)

    @torch.no_grad()
    def _predict(self, model: DisplacementModel, batches: Iterable[Batch]):
        predictions, targets, inputs = [], [], []
        for batch in batches:
            predictions.append(model(batch).double().cpu())
            targets.append(batch.y.double().cpu())
            inputs.append(torch.stack([batch.pos, batch.vel]).double().cpu())
        return torch.cat(predictions), torch.cat(targets), torch.cat(inputs, dim=1)

    def predict(
        self, model: DisplacementModel, batches: Iterable[Batch]
    ) -> dict[str, torch.Tensor]:
        """``{"prediction", "target"}``: positions ``[N, 3]`` (float64, CPU), in batch order."""
        predictions, targets, _ = self._predict(model, batches)
        return {"prediction": predictions, "target": targets}

    def per_system_mse(self, model: DisplacementModel, batches: Iterable[Batch]) -> torch.Tensor:
        """``[num_systems]``: each system's squared position error, averaged over its particles
        and coordinates (float64, in batch order). Their mean is the split's MSE."""
        predicted = self.predict(model, batches)
        error = (predicted["prediction"] - predicted["target"]).pow(2)
        return error.view(-1, NUM_PARTICLES * 3).mean(dim=1)

    def scores(self, predicted: dict[str, torch.Tensor]) -> dict[str, float]:
        """The MSE of :meth:`predict`'s output."""
        return {"mse": float((predicted["prediction"] - predicted["target"]).pow(2).mean())}

    def report(
        self, model: DisplacementModel, batches: Iterable[Batch], run_dir: Path
    ) -> dict[str, Any]:
        predictions, targets, (positions, velocities) = self._predict(model, batches)
        test_mse = float((predictions - targets).pow(2).mean())
        # baselines: particles stand still; particles keep their velocity for 1,000 steps of 0.001
        static = float((positions - targets).pow(2).mean())
        linear = float((positions + velocities - targets).pow(2).mean())
        parity_plot(
            targets.flatten().numpy(),
            predictions.flatten().numpy(),
            run_dir / "parity_test.png",
            f"N-body coordinates 1,000 steps ahead, test MSE {test_mse:.4g}",
        )
        return {
            "target": "positions",
            "unit": "",
            "test_mse": test_mse,
            "static_test_mse": static,
            "constant_velocity_test_mse": linear,
            "num_test": len(self.datasets["test"]),
        }

    @staticmethod
    def summary(results: dict[str, Any]) -> str:
        return (
            f"test MSE: {results['test_mse']:.4g} (particles standing still: "
            f"{results['static_test_mse']:.4g}; constant velocity: "
            f"{results['constant_velocity_test_mse']:.4g})"
        )
