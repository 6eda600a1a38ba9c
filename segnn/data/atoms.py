"""ASE ``Atoms`` → PyG graphs, and datasets of structures with reference energies and forces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.io import read
from torch_geometric.data import Data

from segnn.data.graph import mark_paired, radius_graph
from segnn.data.neighbours import check_cell, neighbour_list


def atoms_to_graph(atoms: Atoms, cutoff: float | None, dtype: torch.dtype | None = None) -> Data:
    """A molecule or a periodic cell as a graph of the atoms closer than ``cutoff``.

    Returns ``Data`` with ``pos [N, 3]`` (Å, ``dtype`` or torch's default), ``z [N]`` (atomic
    numbers, long) and ``edge_index [2, E]`` (source, target) joining atoms closer than
    ``cutoff`` Å (left out when ``cutoff`` is ``None``: batches get theirs from
    :class:`segnn.data.RadiusGraphCollate`). Structures with ``atoms.pbc`` set also carry
    ``cell [1, 3, 3]`` (rows: cell vectors, Å), ``pbc [1, 3]`` and, with the edges, each edge's
    image shift ``edge_shift [E, 3]`` (:mod:`segnn.data.neighbours`). Raises ``ValueError`` for
    empty structures, unknown elements, non-finite positions or cells, and cells without volume
    along a periodic direction.
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
    if atoms.pbc.any():
        cell = np.asarray(atoms.get_cell(), dtype=np.float64)
        check_cell(cell, atoms.pbc)
        data = Data(
            pos=pos,
            z=z,
            cell=torch.as_tensor(cell, dtype=pos.dtype).unsqueeze(0),
            pbc=torch.as_tensor(atoms.pbc, dtype=torch.bool).unsqueeze(0),
        )
        if cutoff is None:
            return data
        data.edge_index, data.edge_shift = neighbour_list(pos, cutoff, cell, atoms.pbc)
        return mark_paired(data)
    if cutoff is None:
        return Data(pos=pos, z=z)
    return mark_paired(Data(pos=pos, z=z, edge_index=radius_graph(pos, cutoff)))


def read_structures(path: str | Path) -> list[Atoms]:
    """Every frame of a file ASE reads; ``FileNotFoundError``/``ValueError`` name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"structure file not found: {path}")
    try:
        return read(path, index=":")
    except Exception as error:  # ASE raises many types for unreadable files
        raise ValueError(f"ASE cannot read {path}: {error}") from None


def _frame_value(atoms: Atoms, key: str, per_atom: bool):
    """A frame's reference value: ``atoms.arrays``/``atoms.info`` first, then the results that
    ASE's extended-XYZ reader moves into a single-point calculator (``energy``, ``forces``)."""
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return store[key]
    if atoms.calc is not None and key in getattr(atoms.calc, "results", {}):
        return atoms.calc.results[key]
    return None


class AtomsDataset(torch.utils.data.Dataset):
    """Structures with reference energies (eV) and optionally forces (eV/Å) from any file ASE
    reads (extended XYZ, ASE trajectories, ...).

    Items are ``Data(pos [n, 3], z [n], energy [1] float64, forces [n, 3] float64)``, positions
    in Å (float32, the training dtype); graphs are built per batch by
    :class:`segnn.data.RadiusGraphCollate`. ``energy_key``/``forces_key`` name the fields of
    ``atoms.info``/``atoms.arrays`` (or of the file's single-point results) that hold them;
    ``forces_key=None`` reads energies only.
    """

    def __init__(
        self,
        frames: list[Atoms],
        energy_key: str = "energy",
        forces_key: str | None = "forces",
        source: str = "structures",
    ):
        self.items = []
        for index, atoms in enumerate(frames):
            where = f"{source}, frame {index}"
            graph = _structure_graph(atoms, where)
            energy = _frame_value(atoms, energy_key, per_atom=False)
            if energy is None:
                raise ValueError(f"{where} has no energy under the key {energy_key!r}")
            graph.energy = torch.tensor([float(energy)], dtype=torch.float64)
            if forces_key is not None:
                forces = _frame_value(atoms, forces_key, per_atom=True)
                if forces is None:
                    raise ValueError(f"{where} has no forces under the key {forces_key!r}")
                forces = torch.as_tensor(np.asarray(forces, dtype=np.float64))
                if forces.shape != (len(atoms), 3):
                    raise ValueError(
                        f"{where}: forces have shape {tuple(forces.shape)}, expected ({len(atoms)}, 3)"
                    )
                graph.forces = forces
            if not torch.isfinite(graph.energy).all() or (
                forces_key is not None and not torch.isfinite(graph.forces).all()
            ):
                raise ValueError(f"{where} has non-finite reference energy or forces")
            self.items.append(graph)
        if not self.items:
            raise ValueError(f"{source} holds no structures")
        self.has_forces = forces_key is not None

    @classmethod
    def from_file(
        cls, path: str | Path, energy_key: str = "energy", forces_key: str | None = "forces"
    ) -> AtomsDataset:
        """Read every frame of ``path`` (raises ``FileNotFoundError``/``ValueError`` that name it)."""
        return cls(read_structures(path), energy_key, forces_key, source=str(path))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: int) -> Data:
        return self.items[item]

    def subset(self, indices: torch.Tensor) -> AtomsDataset:
        """A dataset view holding the given frames (shared, not copied)."""
        view = object.__new__(AtomsDataset)
        view.items = [self.items[int(i)] for i in indices]
        view.has_forces = self.has_forces
        return view

    def energies(self) -> torch.Tensor:
        """``[len(self)]`` reference energies (eV, float64)."""
        return torch.cat([item.energy for item in self.items])

    def elements(self) -> torch.Tensor:
        """Sorted atomic numbers present in the dataset."""
        return torch.cat([item.z for item in self.items]).unique()

    def composition(self) -> torch.Tensor:
        """``[len(self), len(elements())]`` float64 count of each element in each structure."""
        elements = self.elements()
        return torch.stack(
            [(item.z.unsqueeze(1) == elements).sum(0).double() for item in self.items]
        )


def _structure_graph(atoms: Atoms, where: str) -> Data:
    """:func:`atoms_to_graph` without edges, float32, with errors that say which frame."""
    try:
        return atoms_to_graph(atoms, cutoff=None, dtype=torch.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
