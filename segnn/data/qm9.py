"""QM9 (Ramakrishnan et al. 2014; B3LYP/6-31G(2df,p)) from the ``qm9pack`` package, offline.

The 130,831 molecules are read once from qm9pack's CSV tables and cached as concatenated tensors
(``data/qm9/qm9.pt``: positions, atomic numbers, atom counts and the 12 targets), which reload in
well under a second. Targets are in the literature's units; the energies U0, U, H and G are
*atomization* energies: the B3LYP energies of the free atoms (:data:`ATOM_REFERENCE_HARTREE`)
are subtracted, as EGNN and PyTorch Geometric do (the official SEGNN code does not).
"""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers
from torch_geometric.data import Data
from tqdm import tqdm

HARTREE_TO_EV = 27.211386246

# Energies of the isolated atoms at the QM9 level of theory (Hartree), from the QM9 atomref
# table (Ramakrishnan et al., Sci. Data 1, 140022, 2014): U0, U(298.15 K), H(298.15 K), G(298.15 K).
ATOM_REFERENCE_HARTREE = {
    "H": (-0.500273, -0.498857, -0.497912, -0.510927),
    "C": (-37.846772, -37.845355, -37.844411, -37.861317),
    "N": (-54.583861, -54.582445, -54.581501, -54.598897),
    "O": (-75.064579, -75.063162, -75.062219, -75.079532),
    "F": (-99.718730, -99.717314, -99.716370, -99.733544),
}


@dataclass(frozen=True)
class Target:
    """One QM9 property: where it lives in qm9pack's tables and which units it has."""

    name: str
    column: str
    description: str
    unit: str  # unit of the dataset values and of predictions
    factor: float  # qm9pack value * factor = value in `unit`
    report_unit: str  # unit of reported errors (MAE), as in the literature
    report_factor: float  # value in `unit` * report_factor = value in `report_unit`
    atom_reference: int | None = None  # column of ATOM_REFERENCE_HARTREE to subtract


TARGETS: dict[str, Target] = {
    target.name: target
    for target in [
        Target("mu", "Dipole_debye", "dipole moment", "D", 1.0, "D", 1.0),
        Target(
            "alpha", "Polarizability_bohr3", "isotropic polarizability", "a0^3", 1.0, "a0^3", 1.0
        ),
        Target("homo", "HOMO_au", "HOMO energy", "eV", HARTREE_TO_EV, "meV", 1000.0),
        Target("lumo", "LUMO_au", "LUMO energy", "eV", HARTREE_TO_EV, "meV", 1000.0),
        Target("gap", "HOMO_LUMO_gap_au", "HOMO-LUMO gap", "eV", HARTREE_TO_EV, "meV", 1000.0),
        Target("r2", "R2_bohr2", "electronic spatial extent", "a0^2", 1.0, "a0^2", 1.0),
        Target(
            "zpve", "ZPVE_au", "zero-point vibrational energy", "eV", HARTREE_TO_EV, "meV", 1000.0
        ),
        Target(
            "u0",
            "InternalEnergy_0K_au",
            "atomization energy U0 (0 K)",
            "eV",
            HARTREE_TO_EV,
            "meV",
            1000.0,
            0,
        ),
        Target(
            "u",
            "InternalEnergy_298K_au",
            "atomization energy U (298 K)",
            "eV",
            HARTREE_TO_EV,
            "meV",
            1000.0,
            1,
        ),
        Target(
            "h",
            "Enthalphy_298K_au",
            "atomization enthalpy H (298 K)",
            "eV",
            HARTREE_TO_EV,
            "meV",
            1000.0,
            2,
        ),
        Target(
            "g",
            "GibbsFreeEnergy_298K_au",
            "atomization free energy G (298 K)",
            "eV",
            HARTREE_TO_EV,
            "meV",
            1000.0,
            3,
        ),
        Target(
            "cv",
            "Heatcapacity_Cv_cal_mol_K",
            "heat capacity at 298 K",
            "cal/mol/K",
            1.0,
            "cal/mol/K",
            1.0,
        ),
    ]
}
SPLIT_SIZES = {"train": 100_000, "val": 17_748, "test": 13_083}
NUM_MOLECULES = 130_831
_CACHE_VERSION = 1
_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise ValueError(f"unknown QM9 target {name!r}; choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


def qm9pack_tables() -> list[Path]:
    """Paths of qm9pack's CSV tables (found without importing qm9pack, whose import can fail)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the qm9pack package is not installed: pip install qm9pack")
    folder = Path(spec.submodule_search_locations[0]) / "data"
    tables = [folder / f"qm9_part{part}.csv" for part in (1, 2, 3)]
    missing = [str(table) for table in tables if not table.is_file()]
    if missing:
        raise FileNotFoundError(f"qm9pack is missing its data tables: {', '.join(missing)}")
    return tables


def convert_qm9pack(tables: list[Path]) -> dict[str, torch.Tensor]:
    """Parse qm9pack's CSVs into concatenated tensors (targets in the units of :data:`TARGETS`)."""
    csv.field_size_limit(sys.maxsize)
    positions, numbers, counts, index, targets = [], [], [], [], []
    references = {
        symbol: np.array(values) * HARTREE_TO_EV
        for symbol, values in ATOM_REFERENCE_HARTREE.items()
    }
    with tqdm(total=NUM_MOLECULES, desc="converting QM9", unit="mol") as progress:
        for table in tables:
            with open(table, newline="") as handle:
                for row in csv.DictReader(handle):
                    symbols = re.findall(r"[A-Z][a-z]?", row["Elements"])
                    xyz = np.array(_FLOAT.findall(row["XYZ_Ang"]), dtype=np.float64).reshape(-1, 3)
                    if len(symbols) != int(row["N_atoms"]) or len(xyz) != len(symbols):
                        raise ValueError(f"malformed QM9 row {row['Index']} in {table}")
                    atom_reference = sum(references[symbol] for symbol in symbols)
                    values = []
                    for target in TARGETS.values():
                        value = float(row[target.column]) * target.factor
                        if target.atom_reference is not None:
                            value -= atom_reference[target.atom_reference]
                        values.append(value)
                    positions.append(xyz)
                    numbers.append([atomic_numbers[symbol] for symbol in symbols])
                    counts.append(len(symbols))
                    index.append(int(row["Index"]))
                    targets.append(values)
                    progress.update()
    order = np.argsort(index, kind="stable")
    counts_array = np.array(counts)
    offsets = np.concatenate([[0], np.cumsum(counts_array)[:-1]])
    atom_order = np.concatenate(
        [np.arange(offsets[i], offsets[i] + counts_array[i]) for i in order]
    )
    return {
        "version": torch.tensor(_CACHE_VERSION),
        "index": torch.tensor(np.array(index)[order]),
        "pos": torch.tensor(np.concatenate(positions)[atom_order], dtype=torch.float32),
        "z": torch.tensor(np.concatenate(numbers)[atom_order], dtype=torch.uint8),
        "num_atoms": torch.tensor(counts_array[order]),
        "y": torch.tensor(np.array(targets)[order], dtype=torch.float64),
    }


_LOADED: dict[Path, dict[str, torch.Tensor]] = {}


def load_qm9_tensors(root: str | Path = "data/qm9") -> dict[str, torch.Tensor]:
    """The processed QM9 tensors, converting qm9pack's tables on the first call.

    Loaded once per process and shared (read-only) by every split built from the same cache.
    """
    cache = (Path(root) / "qm9.pt").resolve()
    if cache in _LOADED:
        return _LOADED[cache]
    tensors = torch.load(cache, weights_only=True) if cache.is_file() else {}
    if int(tensors.get("version", -1)) != _CACHE_VERSION:
        tensors = convert_qm9pack(qm9pack_tables())
        cache.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache.with_suffix(".tmp")
        torch.save(tensors, temporary)
        temporary.replace(cache)
    _LOADED[cache] = tensors
    return tensors


def split_indices(seed: int = 0, num_molecules: int = NUM_MOLECULES) -> dict[str, torch.Tensor]:
    """The standard seeded split: 100,000 train / 17,748 validation / 13,083 test molecules.

    The official SEGNN code's split (after Cormorant): molecules in QM9 index order, permuted by
    NumPy's ``RandomState(seed).permutation`` (``np.random.seed(0); np.random.permutation``
    there), the first 100,000 for training, the next 17,748 for validation, the rest for test.
    """
    permutation = torch.from_numpy(np.random.RandomState(seed).permutation(num_molecules))
    train_end = SPLIT_SIZES["train"]
    val_end = train_end + SPLIT_SIZES["val"]
    return {
        "train": permutation[:train_end],
        "val": permutation[train_end:val_end],
        "test": permutation[val_end:],
    }


class QM9(torch.utils.data.Dataset):
    """One split of QM9 with one target; items are ``Data(pos [n, 3], z [n], y [1, 1] float64)``.

    Graphs are built per batch by :class:`segnn.data.RadiusGraphCollate`.
    """

    def __init__(
        self,
        split: str,
        target: str,
        root: str | Path = "data/qm9",
        seed: int = 0,
        subset: int | None = None,
    ):
        if split not in SPLIT_SIZES:
            raise ValueError(f"unknown split {split!r}; choose train, val or test")
        self.target = get_target(target)
        tensors = load_qm9_tensors(root)
        molecules = split_indices(seed, len(tensors["num_atoms"]))[split]
        if subset is not None:
            molecules = molecules[:subset]
        self.molecules = molecules
        self.pos, self.z, self.num_atoms = tensors["pos"], tensors["z"], tensors["num_atoms"]
        self.offsets = torch.cumsum(self.num_atoms, 0) - self.num_atoms
        self.y = tensors["y"][:, list(TARGETS).index(target)]

    def __len__(self) -> int:
        return len(self.molecules)

    def targets(self) -> torch.Tensor:
        """``[len(self)]`` target values (float64, in ``self.target.unit``)."""
        return self.y[self.molecules]

    def elements(self) -> torch.Tensor:
        """Sorted atomic numbers present in the whole of QM9: H, C, N, O, F."""
        return self.z.unique().long()

    def composition(self) -> torch.Tensor:
        """``[len(self), len(elements())]`` float64 count of each element in each molecule."""
        elements = self.elements()
        counts = torch.zeros(len(self), len(elements), dtype=torch.float64)
        column_of = torch.full((int(elements.max()) + 1,), -1, dtype=torch.long)
        column_of[elements] = torch.arange(len(elements))
        for row, molecule in enumerate(self.molecules.tolist()):
            start, count = int(self.offsets[molecule]), int(self.num_atoms[molecule])
            columns = column_of[self.z[start : start + count].long()]
            counts[row] += torch.bincount(columns, minlength=len(elements)).double()
        return counts

    def __getitem__(self, item: int) -> Data:
        molecule = int(self.molecules[item])
        start, count = int(self.offsets[molecule]), int(self.num_atoms[molecule])
        return Data(
            pos=self.pos[start : start + count],
            z=self.z[start : start + count].long(),
            y=self.y[molecule].reshape(1, 1),
        )
