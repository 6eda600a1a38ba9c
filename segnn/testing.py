"""Equivariance test kit: random E(3) transforms of batches and checks of outputs.

Typical use::

    from segnn.testing import assert_model_equivariant
    assert_model_equivariant(model, batch, model.irreps_out)      # graph-level outputs

    from segnn.testing import assert_module_equivariant
    assert_module_equivariant(layer, [x, attr], [irreps_x, irreps_attr], irreps_out)

A check draws random orthogonal matrices (proper rotations and reflections alternate), random
translations and random permutations of the atoms within each graph, and compares
``f(g·input)`` with ``g·f(input)``. Tolerances follow the dtype: float64 outputs must agree to
``1e-9`` absolute (relative once outputs exceed 1); float32 to ``1e-4`` relative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from e3nn import o3
from torch_geometric.data import Batch, Data

EXAMPLE_MOLECULES = ("CH4", "H2O", "CH3CH2OH", "C6H6", "CH3COOH", "HCN", "CF4")


def example_batch(
    cutoff: float = 2.0,
    dtype: torch.dtype = torch.float64,
    names: Sequence[str] = EXAMPLE_MOLECULES,
) -> Batch:
    """A PyG batch of small real molecules (``ase.build.molecule`` geometries) as radius graphs
    in segnn's paired layout (as training batches are)."""
    from ase.build import molecule

    from segnn.data import RadiusGraphCollate, atoms_to_graph

    return RadiusGraphCollate(cutoff)(
        [atoms_to_graph(molecule(name), None, dtype=dtype) for name in names]
    )


def example_energy_model(cutoff: float = 4.0, seed: int = 0, **model) -> torch.nn.Module:
    """A small float64 :class:`segnn.EnergyModel` for H, C, O with random weights (``seed``),
    Bessel radial basis and made-up per-element references; ``model`` overrides
    :class:`segnn.config.ModelConfig` fields."""
    from segnn.config import ModelConfig
    from segnn.models import SEGNN, EnergyModel

    torch.manual_seed(seed)
    options = {
        "species": ["H", "C", "O"],
        "hidden_features": 24,
        "lmax_hidden": 1,
        "lmax_attr": 2,
        "num_layers": 2,
        "norm": "none",
        "task": "energy",
        "radial": "bessel",
    } | model
    reference = torch.zeros(119, dtype=torch.float64)
    reference[[1, 6, 8]] = torch.tensor([-10.7, -48.2, -77.3], dtype=torch.float64)
    network = SEGNN(ModelConfig(**options), cutoff=cutoff)
    return EnergyModel(network, cutoff, scale=0.9, atom_reference=reference).double()


class EquivarianceError(AssertionError):
    """An output did not transform as its irreps say it should."""


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """``(atol, rtol)`` for comparing outputs of ``dtype``: ``|a - b| <= atol + rtol * max|b|``."""
    if dtype == torch.float64:
        return 1e-9, 1e-9
    return 1e-6, 1e-4


def wigner_d(irreps: o3.Irreps | str, rotation: torch.Tensor) -> torch.Tensor:
    """``[irreps.dim, irreps.dim]`` representation matrix of the orthogonal ``rotation``, float64.

    e3nn builds intermediate tensors in torch's default dtype; float32 there costs ~1e-7, so
    the matrix is computed with float64 as the default.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return o3.Irreps(irreps).D_from_matrix(rotation.to(torch.float64))
    finally:
        torch.set_default_dtype(previous)


def random_orthogonal(
    reflection: bool, dtype: torch.dtype = torch.float64, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A Haar-random ``[3, 3]`` rotation, times ``-1`` (a rotoreflection) if ``reflection``."""
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=generator))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q = -q
    return (-q if reflection else q).to(dtype)


def permutation_within_graphs(
    batch: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``perm [N]`` (new position → old node) that shuffles atoms but keeps graphs contiguous."""
    keys = (
        batch.to(torch.float64)
        + torch.rand(batch.shape[0], dtype=torch.float64, generator=generator) * 0.5
    )
    return torch.argsort(keys)


def edge_permutation(data: Data, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random order of ``data``'s edges; for a graph in the paired layout, a random order of
    its pairs applied to both halves, so that the layout holds."""
    from segnn.data import is_paired

    num_edges = data.edge_index.shape[1]
    if not is_paired(data):
        return torch.randperm(num_edges, generator=generator)
    pairs = torch.randperm(num_edges // 2, generator=generator)
    return torch.cat([pairs, pairs + num_edges // 2])


@dataclass
class E3Transform:
    """``x → R x + t`` on positions, ``v → R v`` on other vectors, and a relabelling of atoms.

    ``permutation[new] = old``; ``edge_permutation`` shuffles the order of the edges (of a
    graph in the paired layout, :mod:`segnn.data.graph`, the pairs, keeping the layout).
    """

    rotation: torch.Tensor
    translation: torch.Tensor
    permutation: torch.Tensor
    edge_permutation: torch.Tensor

    @classmethod
    def random(
        cls, data: Data, reflection: bool, generator: torch.Generator | None = None
    ) -> E3Transform:
        dtype, device = data.pos.dtype, data.pos.device
        batch = (
            data.batch.cpu()
            if getattr(data, "batch", None) is not None
            else torch.zeros(data.num_nodes, dtype=torch.long)
        )
        return cls(
            rotation=random_orthogonal(reflection, dtype, generator).to(device),
            translation=(torch.randn(3, dtype=torch.float64, generator=generator) * 3).to(
                device=device, dtype=dtype
            ),
            permutation=permutation_within_graphs(batch, generator).to(device),
            edge_permutation=edge_permutation(data, generator).to(device),
        )

    def apply(self, data: Data, vector_keys: Sequence[str] = ()) -> Data:
        """A transformed copy of ``data``: positions and ``vector_keys`` rotated, atoms relabelled."""
        out = data.clone()
        out.pos = data.pos @ self.rotation.T + self.translation
        for key in vector_keys:
            out[key] = data[key] @ self.rotation.T
        num_nodes = data.num_nodes
        for key, value in out.items():
            if key in ("edge_index", "batch", "ptr") or not torch.is_tensor(value):
                continue
            if out.is_node_attr(key) and value.shape[0] == num_nodes:
                out[key] = value[self.permutation]
            elif out.is_edge_attr(key):
                out[key] = value[self.edge_permutation]
        new_index_of_old = torch.empty_like(self.permutation)
        new_index_of_old[self.permutation] = torch.arange(num_nodes, device=data.pos.device)
        out.edge_index = new_index_of_old[data.edge_index][:, self.edge_permutation]
        return out

    def transform_output(
        self, output: torch.Tensor, irreps: o3.Irreps | str, per_node: bool
    ) -> torch.Tensor:
        """What ``output`` must become: ``D(R)`` applied, rows relabelled if ``per_node``."""
        wigner = wigner_d(irreps, self.rotation.cpu()).to(device=output.device, dtype=output.dtype)
        output = output @ wigner.T
        return output[self.permutation] if per_node else output


def compare(expected: torch.Tensor, actual: torch.Tensor, what: str) -> float:
    """Raise :class:`EquivarianceError` unless ``actual`` matches ``expected``; return the error."""
    expected, actual = expected.detach(), actual.detach()
    if expected.shape != actual.shape:
        raise EquivarianceError(f"{what}: shape {list(actual.shape)} != {list(expected.shape)}")
    atol, rtol = tolerance(expected.dtype)
    error = float((expected - actual).abs().max()) if expected.numel() else 0.0
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    if not error <= atol + rtol * scale:
        raise EquivarianceError(
            f"{what}: max deviation {error:.3e} exceeds {atol:.0e} + {rtol:.0e} * {scale:.3e} "
            f"({expected.dtype})"
        )
    return error


def assert_same_outputs_and_gradients(
    actual: tuple[torch.Tensor, Sequence[torch.Tensor]],
    expected: tuple[torch.Tensor, Sequence[torch.Tensor]],
    tolerance: float,
    what: str = "",
) -> None:
    """Two ``(output, parameter gradients)`` results of the same function on the same weights
    (e.g. two computation paths): the outputs agree within ``tolerance`` times the largest
    expected output, every gradient within ``tolerance`` times the largest expected gradient
    (relative to that: some parameters, e.g. biases feeding a norm, get gradients near 0)."""
    output, gradients = actual
    expected_output, expected_gradients = expected
    error = float((output - expected_output).abs().max())
    assert error <= tolerance * float(expected_output.abs().max()), f"{what} output: {error:.3e}"
    scale = max(float(g.abs().max()) for g in expected_gradients if g.numel())
    assert len(gradients) == len(expected_gradients), what
    for index, (mine, theirs) in enumerate(zip(gradients, expected_gradients)):
        error = float((mine - theirs).abs().max()) if theirs.numel() else 0.0
        assert error <= tolerance * scale, f"{what} gradient {index}: {error:.3e}"


def assert_model_equivariant(
    model: Callable[[Data], torch.Tensor],
    data: Data,
    irreps_out: o3.Irreps | str,
    per_node: bool = False,
    vector_keys: Sequence[str] = (),
    trials: int = 4,
    seed: int = 0,
) -> float:
    """Check ``model(g·data) == g·model(data)`` for random rotations/reflections, translations
    and atom permutations. Outputs are ``[num_graphs, irreps_out.dim]`` (or ``[N, ...]`` with
    ``per_node``). Returns the largest deviation seen; raises :class:`EquivarianceError`."""
    generator = torch.Generator().manual_seed(seed)
    reference = model(data)
    worst = 0.0
    for trial in range(trials):
        transform = E3Transform.random(data, reflection=trial % 2 == 1, generator=generator)
        expected = transform.transform_output(reference, irreps_out, per_node)
        actual = model(transform.apply(data, vector_keys))
        kind = "reflection" if trial % 2 else "rotation"
        worst = max(
            worst, compare(expected, actual, f"trial {trial} ({kind}, translation, permutation)")
        )
    return worst


def assert_module_equivariant(
    module: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    irreps_in: Sequence[o3.Irreps | str | None],
    irreps_out: o3.Irreps | str,
    trials: int = 4,
    seed: int = 0,
) -> float:
    """Check ``module(D_1 x_1, D_2 x_2, ...) == D_out module(x_1, x_2, ...)`` for random O(3).

    ``irreps_in[k] = None`` marks an input that does not transform (indices, batch vectors).
    Returns the largest deviation seen; raises :class:`EquivarianceError`.
    """
    generator = torch.Generator().manual_seed(seed)
    reference = module(*inputs)
    worst = 0.0
    for trial in range(trials):
        rotation = random_orthogonal(trial % 2 == 1, torch.float64, generator)
        moved = [
            x if irreps is None else x @ wigner_d(irreps, rotation).to(x.dtype).T
            for x, irreps in zip(inputs, irreps_in)
        ]
        expected = reference @ wigner_d(irreps_out, rotation).to(reference.dtype).T
        kind = "reflection" if trial % 2 else "rotation"
        worst = max(worst, compare(expected, module(*moved), f"trial {trial} ({kind})"))
    return worst


def finite_difference_forces(
    energy: Callable[[Atoms], float], atoms: Atoms, step: float = 1e-5
) -> np.ndarray:
    """``[N, 3]`` forces ``-dE/dx`` of ``energy(atoms)`` (eV → eV/Å) by central differences."""
    forces = np.zeros((len(atoms), 3))
    for atom in range(len(atoms)):
        for axis in range(3):
            energies = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[atom, axis] += sign * step
                energies.append(energy(moved))
            forces[atom, axis] = -(energies[0] - energies[1]) / (2 * step)
    return forces
