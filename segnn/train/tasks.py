"""What is learned: datasets, model wrapper, loss, metrics and the test report of a run.

The :class:`segnn.train.Trainer` is the same for every task; a task supplies

* ``datasets`` — ``{"train", "val", "test"}`` → map-style datasets of ``Data`` items, and
  ``collate`` — list of items → ``Batch`` with its graph;
* ``build_model()`` — the model wrapper, with statistics fitted on the training split;
* ``loss(model, batch)`` — the normalised training loss of one batch;
* ``predict(model, batches)`` — predictions and targets as tensors, ``scores(predicted)`` —
  ``{metric: value}`` from them (the trainer gathers the ranks' predictions first), and
  ``evaluate(model, batches)`` — both: ``{metric: value}`` in report units (``metrics`` names them
  and their units; ``selection_metric`` picks best checkpoints and early stopping);
* ``report(model, batches, run_dir)`` — test metrics, a baseline and parity plots, and
  ``summary(results)`` — one line that says them;
* ``differentiates`` — whether the loss takes derivatives of the model's output with respect
  to positions (forces, stress), which the backend must then support twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from ase.data import chemical_symbols
from e3nn import o3
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from segnn.config import Config, ConfigError, DataConfig
from segnn.data import AtomsDataset, RadiusGraphCollate
from segnn.data.nbody import NUM_PARTICLES, FullGraphCollate, NBody
from segnn.data.qm9 import QM9, get_target
from segnn.models import DisplacementModel, EnergyModel, PropertyModel, build_model
from segnn.train.plots import parity_plot


def fit_atom_reference(
    composition: torch.Tensor, elements: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Least-squares value per element, ``[119]`` (zeros for absent elements), such that the sum
    over a structure's atoms best matches ``targets``.

    ``composition [S, len(elements)]``: element counts per structure; ``targets [S]``.
    """
    composition, targets = composition.double(), targets.double()
    present = composition.sum(0) > 0
    composition, elements = composition[:, present], elements[present]
    # ridge-stabilised normal equations on an [elements x elements] system: bit-for-bit
    # repeatable (torch's lstsq is not) and solvable when element counts are collinear
    gram = composition.T @ composition + 1e-8 * torch.eye(len(elements), dtype=torch.float64)
    reference = torch.zeros(len(chemical_symbols), dtype=torch.float64)
    reference[elements.long()] = torch.linalg.solve(gram, composition.T @ targets)
    return reference


def elementwise_loss(
    kind: str,
    difference: torch.Tensor,
    weight: torch.Tensor | None = None,
    rows: int | None = None,
) -> torch.Tensor:
    """Mean absolute (``l1``) or squared (``mse``) error of a difference tensor ``[R, ...]``;
    with ``weight [R]`` (e.g. 0 for the padding graph of :mod:`segnn.data.padding`), the
    weighted mean over the rows' elements. ``rows``: divide as if there were that many
    (weight-1) rows, e.g. those of the global batch of which ``difference`` is one rank's share
    (:mod:`segnn.train.distributed`): the shares' losses then add up to the global one. No
    weighted row gives zero."""
    error = difference.abs() if kind == "l1" else difference.pow(2)
    if weight is not None:
        weight = weight.to(error.dtype).view(-1, *[1] * (error.dim() - 1)).expand_as(error)
    if rows is not None:
        per_row = error[0].numel() if error.shape[0] else 1
        total = error if weight is None else error * weight
        return total.sum() / max(rows * per_row, 1)
    if weight is None:
        return error.mean()
    # no weighted row (e.g. a batch without stresses): zero, not 0/0
    return (error * weight).sum() / weight.sum().clamp_min(torch.finfo(error.dtype).tiny)


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
        weight = getattr(batch, "graph_weight", None)
        rows = getattr(batch, "global_graphs", None)
        return elementwise_loss(self.config.train.loss, prediction - target, weight, rows)

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

    def evaluate(self, model: PropertyModel, batches: Iterable[Batch]) -> dict[str, float]:
        return self.scores(self.predict(model, batches))

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


def split_structures(
    num_structures: int, fractions: list[float], seed: int, shuffle: bool = True
) -> dict[str, torch.Tensor]:
    """Train/val/test indices with the given fractions (rounded down, at least 1): of the
    structures shuffled by ``seed``, or in their order with ``shuffle=False``."""
    permutation = (
        torch.randperm(num_structures, generator=torch.Generator().manual_seed(seed))
        if shuffle
        else torch.arange(num_structures)
    )
    sizes = [max(1, int(fraction * num_structures)) for fraction in fractions]
    if sum(sizes) > num_structures:
        raise ValueError(
            f"cannot split {num_structures} structures into train/val/test fractions {fractions}"
        )
    train_end, val_end = sizes[0], sizes[0] + sizes[1]
    return {
        "train": permutation[:train_end],
        "val": permutation[train_end:val_end],
        "test": permutation[val_end : val_end + sizes[2]],
    }


def data_split(num_structures: int, data: DataConfig) -> dict[str, torch.Tensor]:
    """The train/val/test indices of ``data.path``'s ``num_structures`` structures as
    ``segnn train`` takes them: ``data.split`` fractions, shuffled by ``data.split_seed`` unless
    ``data.split_order`` is ``file`` (before ``data.subset`` caps them)."""
    return split_structures(
        num_structures, data.split, data.split_seed, shuffle=data.split_order == "random"
    )


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

    def build_model(self) -> EnergyModel:
        train = self.datasets["train"]
        energies = train.energies()
        reference = fit_atom_reference(train.composition(), train.elements(), energies)
        if self.has_forces:
            scale = float(torch.cat([item.forces for item in train.items]).pow(2).mean().sqrt())
        else:
            counts = train.composition().sum(1)
            residual = (energies - train.composition() @ reference[train.elements()]) / counts
            scale = float(residual.std()) if len(residual) > 1 else 1.0
        return build_model(self.config, scale=scale or 1.0, atom_reference=reference)

    def loss(self, model: EnergyModel, batch: Batch) -> torch.Tensor:
        train = self.config.train
        stress = self.has_stress and "cell" in batch
        energy, forces, virial = model.normalized(
            batch, forces=self.has_forces, virial=stress, create_graph=True
        )
        ones = torch.ones_like(batch.pos[:, 0])
        atoms = scatter(ones, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="sum")
        atoms = atoms.to(energy.dtype)
        target, force_target, virial_target = model.normalized_targets(batch)
        weight = getattr(batch, "graph_weight", None)
        graphs, atom_rows = (
            getattr(batch, "global_graphs", None),
            getattr(batch, "global_atoms", None),
        )
        error = (energy - target.to(energy.dtype)) / atoms
        loss = train.energy_weight * elementwise_loss(train.loss, error, weight, graphs)
        if self.has_forces:
            atom_weight = None if weight is None else weight.index_select(0, batch.batch)
            error = forces - force_target.to(forces.dtype)
            force_loss = elementwise_loss(train.loss, error, atom_weight, atom_rows)
            loss = loss + train.forces_weight * force_loss
        if stress:
            stress_weight = batch.has_stress.to(virial.dtype)
            if weight is not None:
                stress_weight = stress_weight * weight.to(virial.dtype)
            error = (virial - virial_target.to(virial.dtype)) / atoms[:, None, None]
            rows = getattr(batch, "global_stressed", None)
            stress_loss = elementwise_loss(train.loss, error, stress_weight, rows)
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

    def evaluate(self, model: EnergyModel, batches: Iterable[Batch]) -> dict[str, float]:
        return self.scores(self.predict(model, batches))

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
        parity_plot(
            predicted["energy_ref"].numpy(),
            predicted["energy"].numpy(),
            run_dir / "parity_energy_test.png",
            f"energy (eV), test MAE {maes['energy_mae']:.3g} meV",
        )
        if self.has_forces:
            results["test_forces_mae"] = maes["forces_mae"]
            results["forces_unit"] = "meV/Å"
            results["zero_forces_test_mae"] = 1000 * float(predicted["forces_ref"].abs().mean())
            parity_plot(
                predicted["forces_ref"].flatten().numpy(),
                predicted["forces"].flatten().numpy(),
                run_dir / "parity_forces_test.png",
                f"force components (eV/Å), test MAE {maes['forces_mae']:.3g} meV/Å",
            )
        if self.has_stress and len(predicted["stress"]):
            reference = predicted["stress_ref"]
            results["test_stress_mae"] = maes["stress_mae"]
            results["stress_unit"] = "meV/Å³"
            results["num_test_stress"] = len(reference)
            results["mean_stress_test_mae"] = 1000 * float(
                (reference - reference.mean(0)).abs().mean()
            )
            parity_plot(
                reference.flatten().numpy(),
                predicted["stress"].flatten().numpy(),
                run_dir / "parity_stress_test.png",
                f"stress components (eV/Å³), test MAE {maes['stress_mae']:.3g} meV/Å³",
            )
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

    def build_model(self) -> DisplacementModel:
        return build_model(self.config)

    def loss(self, model: DisplacementModel, batch: Batch) -> torch.Tensor:
        prediction = model(batch)
        weight = getattr(batch, "graph_weight", None)
        if weight is not None:  # padded batches: the padding atoms do not count
            weight = weight.index_select(0, batch.batch)
        difference = prediction - batch.y.to(prediction.dtype)
        rows = getattr(batch, "global_atoms", None)
        return elementwise_loss(self.config.train.loss, difference, weight, rows)

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

    def evaluate(self, model: DisplacementModel, batches: Iterable[Batch]) -> dict[str, float]:
        return self.scores(self.predict(model, batches))

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


def make_task(config: Config) -> PropertyTask | EnergyForceTask | NBodyTask:
    """The task of a config's ``data.dataset``."""
    if config.data.dataset == "nbody":
        model = config.model
        if model.task != "node" or model.output_irreps.replace(" ", "") != "1x1o":
            raise ConfigError(
                "data.dataset 'nbody' predicts displacements: set model.task to 'node' and "
                "model.output_irreps to '1x1o'"
            )
        expected = NBody.input_irreps(config.data.centered_positions)
        if model.input_irreps is None or o3.Irreps(model.input_irreps) != o3.Irreps(expected):
            raise ConfigError(
                f"data.dataset 'nbody' feeds node inputs {expected!r} (data.centered_positions: "
                f"{str(config.data.centered_positions).lower()}): set model.input_irreps to "
                f"{expected!r}, got {model.input_irreps!r}"
            )
        return NBodyTask(config)
    if config.data.dataset == "xyz":
        if config.model.task != "energy" or config.model.radial != "bessel":
            raise ConfigError(
                "data.dataset 'xyz' trains energies and forces: set model.task to 'energy' and "
                "model.radial to 'bessel'"
            )
        return EnergyForceTask(config)
    return PropertyTask(config)
