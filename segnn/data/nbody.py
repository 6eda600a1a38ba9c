"""The charged-particle N-body system (Kipf et al. 2018, in 3D as in Satorras et al. 2021).

Five particles of unit mass carry charges ±1 (each sign with probability 1/2) and interact by
Coulomb forces ``F_i = c Σ_j q_i q_j (x_i - x_j) / |x_i - x_j|^3`` with ``c = 1``. Initial
positions are standard normal (``loc_std = 1``); initial velocities are standard normal
directions scaled to speed ``vel_norm = 0.5``. The dynamics is integrated with time step
``dt = 0.001`` by symplectic Euler, ``v += dt F(x); x += dt v`` per step, which reproduces the
states EGNN's generator records (its first velocity kick comes before the loop and each state is
recorded between the position update and the next kick). As in EGNN there is no bounding box (a
box would break rotation symmetry). A sample is the state after :data:`INPUT_STEP` = 3,100
steps and the positions 1,000 steps later, :data:`TARGET_STEP` = 4,100: EGNN's frames 30 and 40
of a trajectory sampled every 100 steps, whose frame ``k`` is the state after ``100 (k + 1)``
steps (its frame counter starts at 0 on the first recorded step).

One deviation: Kipf et al. clip each Cartesian force component to ``±0.1 / dt``; that clip is
not rotation-equivariant, so here the force vector of a particle is clipped to length
``0.1 / dt = 100`` instead (it acts only when two particles come closer than 0.1).

``segnn data nbody`` writes 3,000 train / 2,000 val / 2,000 test samples to ``data/nbody/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from segnn.config import NBODY_INPUT_IRREPS
from segnn.data.graph import full_graph, mark_paired
from segnn.data.loss_weights import with_loss_weights

NUM_PARTICLES = 5
TIME_STEP = 0.001
INTERACTION_STRENGTH = 1.0
LOC_STD = 1.0
VEL_NORM = 0.5
MAX_FORCE = 0.1 / TIME_STEP
INPUT_STEP = 3100
TARGET_STEP = 4100
SPLIT_SIZES = {"train": 3000, "val": 2000, "test": 2000}
SPLIT_SEED_OFFSETS = {"train": 0, "val": 1, "test": 2}
_FORMAT_VERSION = 2


def coulomb_forces(positions: np.ndarray, charges: np.ndarray) -> np.ndarray:
    """``[S, n, 3]`` positions, ``[S, n]`` charges → ``[S, n, 3]`` clipped Coulomb forces."""
    difference = positions[:, :, None, :] - positions[:, None, :, :]  # x_i - x_j
    squared = np.einsum("sijk,sijk->sij", difference, difference)
    diagonal = np.arange(positions.shape[1])
    squared[:, diagonal, diagonal] = np.inf  # no self-interaction
    strength = INTERACTION_STRENGTH * (charges[:, :, None] * charges[:, None, :]) * squared**-1.5
    forces = np.einsum("sij,sijk->sik", strength, difference)
    norm = np.sqrt(np.einsum("sik,sik->si", forces, forces))[..., None]
    return forces * np.minimum(1.0, MAX_FORCE / np.maximum(norm, 1e-300))


def potential_energy(positions: np.ndarray, charges: np.ndarray) -> np.ndarray:
    """``[S]`` Coulomb energy ``c Σ_{i<j} q_i q_j / |x_i - x_j|``."""
    distance = np.linalg.norm(positions[:, :, None, :] - positions[:, None, :, :], axis=-1)
    pairs = np.triu_indices(positions.shape[1], k=1)
    products = charges[:, :, None] * charges[:, None, :]
    return INTERACTION_STRENGTH * (
        products[:, pairs[0], pairs[1]] / distance[:, pairs[0], pairs[1]]
    ).sum(1)


def initial_state(
    num_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(positions [S, n, 3], velocities [S, n, 3], charges [S, n])`` drawn as documented above."""
    charges = rng.choice(np.array([-1.0, 1.0]), size=(num_samples, NUM_PARTICLES))
    positions = rng.standard_normal((num_samples, NUM_PARTICLES, 3)) * LOC_STD
    velocities = rng.standard_normal((num_samples, NUM_PARTICLES, 3))
    velocities *= VEL_NORM / np.linalg.norm(velocities, axis=-1, keepdims=True)
    return positions, velocities, charges


def _integrate(x: np.ndarray, v: np.ndarray, charges: np.ndarray, steps: int, record_every=None):
    """In place: ``steps`` times ``v += dt F(x); x += dt v``; the states after every
    ``record_every`` steps are returned."""
    recorded = []
    for step in range(1, steps + 1):
        v += TIME_STEP * coulomb_forces(x, charges)
        x += TIME_STEP * v
        if record_every and step % record_every == 0:
            recorded.append((x.copy(), v.copy()))
    return recorded


def simulate(
    positions: np.ndarray,
    velocities: np.ndarray,
    charges: np.ndarray,
    steps: int,
    record_every: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate ``steps`` steps from an initial state (float64, vectorised over samples).

    Returns ``(positions, velocities)`` after the last step, each ``[S, n, 3]``, or with
    ``record_every`` the states after steps ``0, record_every, 2 record_every, ...`` stacked as
    ``[T, S, n, 3]`` (step 0 is the initial state).
    """
    x, v = positions.astype(np.float64).copy(), velocities.astype(np.float64).copy()
    recorded = _integrate(x, v, charges, steps, record_every)
    if record_every:
        states = [(positions, velocities)] + recorded
        return np.stack([state[0] for state in states]), np.stack([state[1] for state in states])
    return x, v


def generate_split(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """Samples of one split: input state at :data:`INPUT_STEP`, target positions at
    :data:`TARGET_STEP`, and the charges."""
    rng = np.random.default_rng(seed)
    positions, velocities, charges = initial_state(num_samples, rng)
    x_input, v_input = simulate(positions, velocities, charges, INPUT_STEP)
    x, v = x_input.copy(), v_input.copy()
    _integrate(x, v, charges, TARGET_STEP - INPUT_STEP)  # continues the same trajectory
    return {
        "positions": x_input,
        "velocities": v_input,
        "charges": charges,
        "target_positions": x,
        "version": np.array(_FORMAT_VERSION),
    }


def generate_dataset(
    root: str | Path = "data/nbody", seed: int = 0, sizes: dict[str, int] | None = None
) -> dict[str, Path]:
    """Write the three splits as ``charged_5_{split}.npz`` under ``root``; returns the paths.

    ``sizes`` overrides :data:`SPLIT_SIZES` (small sets for tests).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, size in (sizes or SPLIT_SIZES).items():
        arrays = generate_split(size, seed * 10 + SPLIT_SEED_OFFSETS[split])
        path = root / f"charged_5_{split}.npz"
        temporary = path.with_suffix(".tmp.npz")
        np.savez(temporary, **arrays)
        temporary.replace(path)
        paths[split] = path
    return paths


def node_inputs(
    pos: torch.Tensor,
    vel: torch.Tensor,
    charge: torch.Tensor,
    batch: torch.Tensor | None = None,
    centered_positions: bool = False,
) -> torch.Tensor:
    """The node inputs ``x = (|v|, q, v)`` (``[N, 5]``, ``2x0e + 1x1o``), with
    ``centered_positions`` also ``x - x̄`` (``[N, 8]``, ``2x0e + 2x1o``), ``x̄`` the centroid of
    each system (``batch [N]`` says which; ``None``: one system). ``pos, vel [N, 3]``,
    ``charge [N, 1]``."""
    features = [vel.norm(dim=-1, keepdim=True), charge, vel]
    if centered_positions:
        if batch is None:
            batch = torch.zeros(len(pos), dtype=torch.long, device=pos.device)
        features.append(pos - scatter(pos, batch, dim=0, reduce="mean")[batch])
    return torch.cat(features, dim=-1)


class NBody(torch.utils.data.Dataset):
    """One split of the charged N-body data set, generated on first use.

    Items are ``Data(pos [5, 3], vel [5, 3], charge [5, 1], x [5, 5], y [5, 3])`` (float32)
    with ``x = (|v|, q, v)`` — irreps ``2x0e + 1x1o`` — and ``y`` the positions 1,000 steps
    later. With ``centered_positions`` ``x [5, 8]`` also holds each particle's position relative
    to the centroid of its system, ``(|v|, q, v, x - x̄)`` (``2x0e + 2x1o``; the official SEGNN
    code feeds positions too): an invariant of translations, so the model stays equivariant.
    Batches get a fully connected graph from :class:`FullGraphCollate`.
    """

    def __init__(
        self,
        split: str,
        root: str | Path = "data/nbody",
        seed: int = 0,
        subset: int | None = None,
        centered_positions: bool = False,
    ):
        if split not in SPLIT_SIZES:
            raise ValueError(f"unknown split {split!r}; choose train, val or test")
        path = Path(root) / f"charged_5_{split}.npz"
        arrays = dict(np.load(path)) if path.is_file() else {}
        if int(arrays.get("version", -1)) != _FORMAT_VERSION:
            generate_dataset(root, seed)
            arrays = dict(np.load(path))
        count = len(arrays["charges"]) if subset is None else min(subset, len(arrays["charges"]))
        tensors = {
            key: torch.as_tensor(arrays[key][:count], dtype=torch.float32)
            for key in ("positions", "velocities", "charges", "target_positions")
        }
        self.pos, self.vel = tensors["positions"], tensors["velocities"]
        self.charge = tensors["charges"].unsqueeze(-1)
        self.target = tensors["target_positions"]
        self.centered_positions = centered_positions

    @staticmethod
    def input_irreps(centered_positions: bool = False) -> str:
        """Irreps of the node inputs ``x``."""
        return NBODY_INPUT_IRREPS[centered_positions]

    def __len__(self) -> int:
        return len(self.pos)

    def __getitem__(self, item: int) -> Data:
        pos, vel, charge = self.pos[item], self.vel[item], self.charge[item]
        features = node_inputs(pos, vel, charge, centered_positions=self.centered_positions)
        return Data(pos=pos, vel=vel, charge=charge, x=features, y=self.target[item])


class FullGraphCollate:
    """``collate_fn``: a list of ``Data`` → one ``Batch`` with every ordered pair of distinct
    nodes of the same graph joined, and the loss weights (:mod:`segnn.data.loss_weights`)."""

    def __call__(self, samples) -> Batch:
        batch = Batch.from_data_list(list(samples))
        batch.edge_index = full_graph(batch.num_nodes, batch.batch)
        return with_loss_weights(mark_paired(batch))
