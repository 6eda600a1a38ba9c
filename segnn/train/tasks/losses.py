"""What losses are made of: the weighted error of one batch, per-element reference values."""

from __future__ import annotations

import torch
from ase.data import chemical_symbols


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


def elementwise_loss(kind: str, difference: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean absolute (``l1``) or squared (``mse``) error of ``difference [R, ...]``, each row
    weighted by ``weight [R]`` (one of a batch's loss weights, :mod:`segnn.data.loss_weights`:
    ``1 / rows`` of the whole batch, 0 for padding or rows without the quantity) and averaged
    over its elements."""
    error = difference.abs() if kind == "l1" else difference.pow(2)
    per_row = error[0].numel() if error.shape[0] else 1
    weight = weight.to(error.dtype).view(-1, *[1] * (error.dim() - 1))
    return (error * weight).sum() / per_row
