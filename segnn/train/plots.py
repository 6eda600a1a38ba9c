"""PNG figures: learning curves and parity plots."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def learning_curves(metrics_csv: Path, output: Path, unit: str) -> None:
    """Training loss and validation MAE against epochs, from a run's ``metrics.csv``."""
    with open(metrics_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    epochs = [int(row["epoch"]) for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [float(row["train_loss"]) for row in rows], marker="o", markersize=3)
    left.set(
        xlabel="epoch", ylabel="training loss (normalised)", yscale="log", title="training loss"
    )
    right.plot(
        epochs, [float(row["val_mae"]) for row in rows], marker="o", markersize=3, color="C1"
    )
    right.set(
        xlabel="epoch", ylabel=f"validation MAE ({unit})", yscale="log", title="validation MAE"
    )
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)


def parity_plot(targets: np.ndarray, predictions: np.ndarray, output: Path, title: str) -> None:
    """Predicted against reference values with the diagonal."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.scatter(targets, predictions, s=4, alpha=0.4)
    low, high = (
        float(min(targets.min(), predictions.min())),
        float(max(targets.max(), predictions.max())),
    )
    axis.plot([low, high], [low, high], color="black", linewidth=1)
    axis.set(xlabel="reference", ylabel="prediction", title=title)
    axis.title.set_fontsize(9)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)
