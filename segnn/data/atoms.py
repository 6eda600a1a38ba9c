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


def frame_value(atoms: Atoms, key: str, per_atom: bool):
    """A frame's reference value: ``atoms.arrays``/``atoms.info`` first, then the results that
    ASE's extended-XYZ reader moves into a single-point calculator (``energy``, ``forces``)."""
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return store[key]
    if atoms.calc is not None and key in getattr(atoms.calc, "results", {}):
        return atoms.calc.results[key]
    return None


class AtomsDataset(torch.utils.data.Dataset):
    """Structures with reference energies (eV), optionally forces (eV/Å) and stress (eV/Å³),
    from any file ASE reads (extended XYZ, ASE trajectories, ...), molecules and periodic cells
    alike.

    Items are ``Data(pos [n, 3], z [n], energy [1] float64, forces [n, 3] float64)``, positions
    in Å (float32, the training dtype), periodic structures with ``cell [1, 3, 3]`` and
    ``pbc [1, 3]``; graphs are built per batch by :class:`segnn.data.RadiusGraphCollate`.
    ``energy_key``/``forces_key``/``stress_key`` name the fields of ``atoms.info``/
    ``atoms.arrays`` (or of the file's single-point results) that hold them; ``forces_key=None``
    reads energies only. With a ``stress_key`` (or a ``virial_key``: the virial ``-stress × V``
    in eV, converted) every item gets ``stress [1, 3, 3]`` float64
    (ASE's sign, ``(1/V) dE/dε``; given as 6 Voigt components ``xx yy zz yz xz xy``, 9 or 3×3)
    and ``has_stress [1]`` (false, with a zero stress, for frames that have none, e.g. molecules
    beside the periodic cells).
    """

    def __init__(
        self,
        frames: list[Atoms],
        energy_key: str = "energy",
        forces_key: str | None = "forces",
        source: str = "structures",
        stress_key: str | None = None,
        virial_key: str | None = None,
    ):
        if stress_key is not None and virial_key is not None:
            raise ValueError("give a stress_key or a virial_key, not both")
        tensor_key = stress_key if virial_key is None else virial_key
        self.items = []
        for index, atoms in enumerate(frames):
            where = f"{source}, frame {index}"
            graph = _structure_graph(atoms, where)
            energy = frame_value(atoms, energy_key, per_atom=False)
            if energy is None:
                raise ValueError(f"{where} has no energy under the key {energy_key!r}")
            graph.energy = torch.tensor([float(energy)], dtype=torch.float64)
            if forces_key is not None:
                forces = frame_value(atoms, forces_key, per_atom=True)
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
            if tensor_key is not None:
                value = frame_value(atoms, tensor_key, per_atom=False)
                graph.stress = _stress_tensor(
                    value, atoms, tensor_key, where, virial_key is not None
                )
                graph.has_stress = torch.tensor([value is not None])
            self.items.append(graph)
        if not self.items:
            raise ValueError(f"{source} holds no structures")
        if tensor_key is not None and not any(item.has_stress for item in self.items):
            what = "stress" if virial_key is None else "virial"
            raise ValueError(f"no frame of {source} has a {what} under the key {tensor_key!r}")
        self.has_forces = forces_key is not None
        self.has_stress = tensor_key is not None

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        energy_key: str = "energy",
        forces_key: str | None = "forces",
        stress_key: str | None = None,
        virial_key: str | None = None,
    ) -> AtomsDataset:
        """Read every frame of ``path`` (raises ``FileNotFoundError``/``ValueError`` that name it)."""
        frames = read_structures(path)
        return cls(frames, energy_key, forces_key, str(path), stress_key, virial_key)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: int) -> Data:
        return self.items[item]

    def subset(self, indices: torch.Tensor) -> AtomsDataset:
        """A dataset view holding the given frames (shared, not copied)."""
        view = object.__new__(AtomsDataset)
        view.items = [self.items[int(i)] for i in indices]
        view.has_forces = self.has_forces
        view.has_stress = self.has_stress
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


VOIGT_ROWS, VOIGT_COLUMNS = [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]  # xx yy zz yz xz xy


def _stress_tensor(value, atoms: Atoms, key: str, where: str, virial: bool = False) -> torch.Tensor:
    """A frame's stress (eV/Å³; from a ``virial`` in eV: ``-virial / V``) as ``[1, 3, 3]``
    float64, zeros for ``None``; ``ValueError`` for a wrong shape, non-finite values or a
    structure without a volume."""
    tensor = torch.zeros(1, 3, 3, dtype=torch.float64)
    if value is None:
        return tensor
    what = "virial" if virial else "stress"
    if not atoms.pbc.all():
        raise ValueError(
            f"{where} has a {what} under {key!r} but is not periodic in all three directions "
            f"(pbc {atoms.pbc.tolist()}): a {what} needs a cell volume"
        )
    values = np.asarray(value, dtype=np.float64)
    if values.shape == (6,):
        full = np.empty((3, 3))
        full[VOIGT_ROWS, VOIGT_COLUMNS] = values
        full[VOIGT_COLUMNS, VOIGT_ROWS] = values
        values = full
    elif values.shape in ((9,), (3, 3)):
        values = values.reshape(3, 3)
    else:
        raise ValueError(
            f"{where}: the {what} under {key!r} has shape {values.shape}; expected 6 Voigt "
            f"components (xx yy zz yz xz xy), 9 components or 3x3"
        )
    if not np.isfinite(values).all():
        raise ValueError(f"{where} has a non-finite {what} under {key!r}")
    if virial:
        values = -values / abs(np.linalg.det(atoms.get_cell()))
    tensor[0] = torch.from_numpy(values)
    return tensor


def _structure_graph(atoms: Atoms, where: str) -> Data:
    """:func:`atoms_to_graph` without edges, float32, with errors that say which frame."""
    try:
        return atoms_to_graph(atoms, cutoff=None, dtype=torch.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
