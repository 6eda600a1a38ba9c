"""ASE ``Atoms`` → PyG graphs."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from torch_geometric.data import Data

from segnn.data.graph import radius_graph


def atoms_to_graph(atoms: Atoms, cutoff: float, dtype: torch.dtype | None = None) -> Data:
    """A molecule as a radius graph.

    Returns ``Data`` with ``pos [N, 3]`` (Å, ``dtype`` or torch's default), ``z [N]`` (atomic
    numbers, long) and ``edge_index [2, E]`` (source, target) joining atoms closer than
    ``cutoff`` Å. Raises ``ValueError`` for empty structures, unknown elements and non-finite
    positions.
    """
    if not isinstance(atoms, Atoms):
        raise TypeError(f"expected ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms")
    numbers = atoms.get_atomic_numbers()
    if (numbers <= 0).any():
        raise ValueError(
            f"unknown element(s) in {atoms.get_chemical_formula()}: atomic number 0 ('X')"
        )
    positions = atoms.get_positions()
    if not np.isfinite(positions).all():
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1)).tolist()
        raise ValueError(f"non-finite (NaN or inf) coordinates for atom(s) {bad}")
    pos = torch.as_tensor(positions, dtype=dtype or torch.get_default_dtype())
    z = torch.as_tensor(numbers, dtype=torch.long)
    return Data(pos=pos, z=z, edge_index=radius_graph(pos, cutoff))
