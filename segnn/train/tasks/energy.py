"""Energies, forces and stress of the structures in a user's file (extended XYZ, ...)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Batch

from segnn.config import Config
from segnn.data import AtomsDataset, RadiusGraphCollate
from segnn.data.split import data_split
from segnn.models import EnergyModel, build_model
from segnn.train.plots import energy_force_parity_plots
from segnn.train.tasks.losses import elementwise_loss, fit_atom_reference


def energy_statistics(train: AtomsDataset, forces: bool) -> tuple[torch.Tensor, float]:
    """The per-element reference energies ``[119]`` (least squares over ``train``) and the
    scale the model's outputs are measured in: the RMS force component with ``forces``, else
    the spread of the per-atom energies left after the references (1 when undefined)."""
    energies = train.energies()
    reference = fit_atom_reference(train.composition(), train.elements(), energies)
    if forces:
        scale = float(torch.cat([item.forces for item in train.items]).pow(2).mean().sqrt())
    else:
        counts = train.composition().sum(1)
        residual = (energies - train.composition() @ reference[train.elements()]) / counts
        scale = float(residual.std()) if len(residual) > 1 else 1.0
    return reference, scale or 1.0


class EnergyForceTask:
    """Energies (and forces, and stress) of the structures in ``data.path``.

    Loss: ``energy_weight * L(ΔE / n_atoms / scale) + forces_weight * L(ΔF / scale)
    + stress_weight * L(ΔW / n_atoms / scale)`` with ``L`` the ``train.loss`` (``mse`` or
    ``l1``), ``scale`` the training RMS force and ``W = -stress × volume`` the virial (frames with
    a stress only). Metrics: energy MAE (meV per structure), force MAE (meV/Å per component) and
    stress MAE (meV/Å³ per component of the 3×3 tensor); the force MAE selects the best
    checkpoint when forces are trained, else the energy MAE.
    """

    def __init__(self, config: Config):
        self.config = config
        data = config.data
        structures = AtomsDataset.from_file(
            data.path, data.energy_key, data.forces_key, data.stress_key, data.virial_key
        )
        indices = data_split(len(structures), data)
        self.datasets = {}
        for split, chosen in indices.items():
            cap = getattr(data.subset, split)
            self.datasets[split] = structures.subset(chosen if cap is None else chosen[:cap])
        self.has_forces = structures.has_forces
        self.has_stress = structures.has_stress
        self.differentiates = self.has_forces or self.has_stress
        self.collate = RadiusGraphCollate(data.cutoff)
        self.metrics = {"energy_mae": "meV"}
        if self.has_forces:
            self.metrics["forces_mae"] = "meV/Å"
        if self.has_stress:
            self.metrics["stress_mae"] = "meV/Å³"
        self.selection_metric = "forces_mae" if self.has_forces else "energy_mae"
        self.name = f"xyz/{Path(data.path).name}"

    @staticmethod
    def run_label(config: Config) -> str:
        return Path(config.data.path or "").stem

    def build_model(self) -> EnergyModel:
        reference, scale = energy_statistics(self.datasets["train"], self.has_forces)
        return build_model(self.config, scale=scale, atom_reference=reference)

    def loss(self, model: EnergyModel, batch: Batch) -> torch.Tensor:
        train = self.config.train
        stress = self.has_stress and "cell" in batch
        energy, forces, virial = model.normalized(
            batch, forces=self.has_forces, virial=stress, create_graph=True
        )
        atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(energy.dtype)
        target, force_target, virial_target = model.normalized_targets(batch)
        error = (energy - target.to(energy.dtype)) / atoms
        loss = train.energy_weight * elementwise_loss(train.loss, error, batch.graph_loss_weight)
        if self.has_forces:
            error = forces - force_target.to(forces.dtype)
            force_loss = elementwise_loss(train.loss, error, batch.atom_loss_weight)
            loss = loss + train.forces_weight * force_loss
        if stress:
            error = (virial - virial_target.to(virial.dtype)) / atoms[:, None, None]
            stress_loss = elementwise_loss(train.loss, error, batch.stress_loss_weight)
            loss = loss + train.stress_weight * stress_loss
        return loss

    def predict(self, model: EnergyModel, batches: Iterable[Batch]) -> dict[str, torch.Tensor]:
        """Energies ``[S]``, forces ``[N, 3]`` and stresses ``[S', 3, 3]`` (of the ``S'``
        structures that have one) predicted and referenced (float64, CPU), in batch order."""
        keys = ["energy"] + ["forces"] * self.has_forces + ["stress"] * self.has_stress
        collected: dict[str, list[torch.Tensor]] = {
            name: [] for key in keys for name in (key, f"{key}_ref")
        }

        def add(key: str, predicted: torch.Tensor, reference: torch.Tensor) -> None:
            collected[key].append(predicted.detach().double().cpu())
            collected[f"{key}_ref"].append(reference.double().cpu())

        for batch in batches:
            stress = self.has_stress and "cell" in batch
            output = model(batch, forces=self.has_forces, stress=stress)
            add("energy", output["energy"], batch.energy)
            if self.has_forces:
                add("forces", output["forces"], batch.forces)
            if stress:
                chosen = batch.has_stress
                add("stress", output["stress"][chosen], batch.stress[chosen])
        empty = torch.zeros(0, 3, 3, dtype=torch.float64)  # no batch had a stress
        return {key: torch.cat(values) if values else empty for key, values in collected.items()}

    @staticmethod
    def scores(predicted: dict[str, torch.Tensor]) -> dict[str, float]:
        """Energy, force and stress MAEs (meV, meV/Å, meV/Å³) of :meth:`predict`'s output."""
        return {
            f"{key}_mae": 1000 * float((predicted[key] - predicted[f"{key}_ref"]).abs().mean())
            for key in ("energy", "forces", "stress")
            if key in predicted
        }

    def report(self, model: EnergyModel, batches: Iterable[Batch], run_dir: Path) -> dict[str, Any]:
        predicted = self.predict(model, batches)
        maes = self.scores(predicted)
        # baseline: the per-element reference energies alone (the least-squares fit)
        test = self.datasets["test"]
        reference_only = test.composition() @ model.atom_reference.cpu()[test.elements()]
        results: dict[str, Any] = {
            "target": "energy",
            "unit": "meV",
            "test_energy_mae": maes["energy_mae"],
            "reference_only_test_energy_mae": 1000
            * float((reference_only - predicted["energy_ref"]).abs().mean()),
            "num_test": len(predicted["energy"]),
            "scale_eV_per_A": float(model.scale),
        }
        if self.has_forces:
            results["test_forces_mae"] = maes["forces_mae"]
            results["forces_unit"] = "meV/Å"
            results["zero_forces_test_mae"] = 1000 * float(predicted["forces_ref"].abs().mean())
        if self.has_stress and len(predicted["stress"]):
            reference = predicted["stress_ref"]
            results["test_stress_mae"] = maes["stress_mae"]
            results["stress_unit"] = "meV/Å³"
            results["num_test_stress"] = len(reference)
            results["mean_stress_test_mae"] = 1000 * float(
                (reference - reference.mean(0)).abs().mean()
            )
        energy_force_parity_plots(predicted, maes, run_dir)
        return results

    @staticmethod
    def summary(results: dict[str, Any]) -> str:
        line = (
            f"test energy MAE: {results['test_energy_mae']:.4g} meV "
            f"(per-element references alone: {results['reference_only_test_energy_mae']:.4g} meV)"
        )
        if "test_forces_mae" in results:
            line += (
                f"; test force MAE: {results['test_forces_mae']:.4g} meV/Å "
                f"(zero forces: {results['zero_forces_test_mae']:.4g} meV/Å)"
            )
        if "test_stress_mae" in results:
            line += (
                f"; test stress MAE: {results['test_stress_mae']:.4g} meV/Å³ "
                f"(mean stress: {results['mean_stress_test_mae']:.4g} meV/Å³)"
            )
        return line
