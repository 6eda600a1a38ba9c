"""Train/validation/test splits of a structure file."""

from __future__ import annotations

import torch

from segnn.config import DataConfig


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
