"""PNG figures: learning curves and parity plots."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from segnn.files import writing  # noqa: E402

if TYPE_CHECKING:
    import torch


def learning_curves(metrics_csv: Path, output: Path, validation_units: dict[str, str]) -> None:
    """Training loss and each validation metric against epochs, from a run's ``metrics.csv``.

    ``validation_units``: ``{column: unit}`` of the validation columns to draw, one panel each.
    """
    with open(metrics_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    epochs = [int(row["epoch"]) for row in rows]
    figure, axes = plt.subplots(
        1, 1 + len(validation_units), figsize=(5 * (1 + len(validation_units)), 4)
    )
    axes[0].plot(epochs, [float(row["train_loss"]) for row in rows], marker="o", markersize=3)
    axes[0].set(
        xlabel="epoch", ylabel="training loss (normalised)", yscale="log", title="training loss"
    )
    for index, (axis, (column, unit)) in enumerate(zip(axes[1:], validation_units.items())):
        name = column.removeprefix("val_").replace("_", " ")
        axis.plot(
            epochs,
            [float(row[column]) for row in rows],
            marker="o",
            markersize=3,
            color=f"C{index + 1}",
        )
        axis.set(
            xlabel="epoch",
            ylabel=f"validation {name} ({unit})" if unit else f"validation {name}",
            yscale="log",
            title=f"validation {name}",
        )
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.tight_layout()
    with writing(output):
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
    with writing(output):
        figure.savefig(output, dpi=120)
    plt.close(figure)


PARITY_PLOTS = {  # quantity: (file, axis label in eV units, MAE unit)
    "energy": ("parity_energy_test.png", "energy (eV)", "meV"),
    "forces": ("parity_forces_test.png", "force components (eV/Å)", "meV/Å"),
    "stress": ("parity_stress_test.png", "stress components (eV/Å³)", "meV/Å³"),
}


def energy_force_parity_plots(
    predicted: dict[str, torch.Tensor], maes: dict[str, float], run_dir: Path
) -> None:
    """One parity plot per quantity of ``predicted`` (``energy``, ``forces``, ``stress`` and
    their ``*_ref``, in eV units) with its test MAE (``maes["<quantity>_mae"]``, meV units)."""
    for quantity, (file, label, unit) in PARITY_PLOTS.items():
        if quantity in predicted and len(predicted[quantity]):
            parity_plot(
                predicted[f"{quantity}_ref"].flatten().numpy(),
                predicted[quantity].flatten().numpy(),
                run_dir / file,
                f"{label}, test MAE {maes[f'{quantity}_mae']:.3g} {unit}",
            )
