"""Periodic cells: invariances, supercells, forces and stress as derivatives of the energy,
rotations — float64, through the ASE calculator."""

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.transform import Rotation

import segnn
from segnn.backends import BACKENDS
from segnn.data import atoms_to_graph
from segnn.testing import example_energy_model

CUTOFF = 3.0


def box(side=(4.0, 4.3, 4.6), seed=0, cell=None) -> Atoms:
    """Four bent HOH triples at random in a (triclinic, when ``cell`` is given) periodic box."""
    rng = np.random.default_rng(seed)
    cell = np.diag(side) if cell is None else np.asarray(cell)
    return Atoms("OHH" * 4, scaled_positions=rng.random((12, 3)), cell=cell, pbc=True)


@pytest.fixture(scope="module")
def calculator():
    return segnn.SEGNNCalculator(example_energy_model(cutoff=CUTOFF))


def energy_forces(atoms, calculator):
    atoms = atoms.copy()
    atoms.calc = calculator
    return atoms.get_potential_energy(), atoms.get_forces()


def test_moving_an_atom_by_a_lattice_vector_or_wrapping_changes_nothing(calculator):
    atoms = box()
    energy, forces = energy_forces(atoms, calculator)
    moved = atoms.copy()
    moved.positions[3] += atoms.cell[0] - 2 * atoms.cell[2]
    assert energy_forces(moved, calculator)[0] == pytest.approx(energy, rel=1e-12, abs=1e-10)
    shifted = atoms.copy()
    shifted.positions += [3.1, -7.2, 11.9]
    shifted.wrap()
    energy_w, forces_w = energy_forces(shifted, calculator)
    assert energy_w == pytest.approx(energy, rel=1e-12, abs=1e-10)
    assert np.abs(forces_w - forces).max() <= 1e-9 * np.abs(forces).max()


@pytest.mark.parametrize(
    "cell",
    [None, [[2.2, 0.0, 0.0], [0.6, 2.4, 0.0], [0.3, 0.4, 2.3]]],
    ids=["box", "triclinic-smaller-than-the-cutoff"],
)
def test_a_supercell_has_eight_times_the_energy_and_the_same_forces(calculator, cell):
    atoms = box(cell=cell)
    energy, forces = energy_forces(atoms, calculator)
    energy_8, forces_8 = energy_forces(atoms.repeat((2, 2, 2)), calculator)
    assert energy_8 == pytest.approx(8 * energy, rel=1e-9)
    assert np.abs(forces_8[: len(atoms)] - forces).max() <= 1e-9 * np.abs(forces).max()


@pytest.mark.parametrize(
    "backend", [name for name, kind in BACKENDS.items() if kind.capabilities.forces]
)
def test_forces_and_stress_are_derivatives_of_the_energy(backend):
    calculator = segnn.SEGNNCalculator(example_energy_model(cutoff=CUTOFF), backend=backend)
    atoms = box(cell=[[4.1, 0.0, 0.0], [0.7, 4.4, 0.0], [-0.5, 0.6, 4.2]])
    atoms.calc = calculator
    forces, stress = atoms.get_forces(), atoms.get_stress()
    numerical_forces = calculator.calculate_numerical_forces(atoms, d=1e-5)
    numerical_stress = calculator.calculate_numerical_stress(atoms, d=1e-6)
    assert np.abs(forces - numerical_forces).max() <= 1e-6 * np.abs(forces).max()
    assert np.abs(stress - numerical_stress).max() <= 1e-6 * np.abs(stress).max()


def test_rotating_cell_and_positions_rotates_forces_and_stress(calculator):
    atoms = box(cell=[[4.1, 0.0, 0.0], [0.7, 4.4, 0.0], [-0.5, 0.6, 4.2]])
    atoms.calc = calculator
    energy, forces, stress = (
        atoms.get_potential_energy(),
        atoms.get_forces(),
        atoms.get_stress(voigt=False),
    )
    rotation = Rotation.from_rotvec([0.3, -1.1, 0.7]).as_matrix()
    turned = atoms.copy()
    turned.set_cell(atoms.cell @ rotation.T, scale_atoms=False)
    turned.positions = atoms.positions @ rotation.T
    turned.calc = calculator
    assert turned.get_potential_energy() == pytest.approx(energy, rel=1e-12)
    assert np.abs(turned.get_forces() - forces @ rotation.T).max() <= 1e-9 * np.abs(forces).max()
    expected = rotation @ stress @ rotation.T
    assert np.abs(turned.get_stress(voigt=False) - expected).max() <= 1e-9 * np.abs(stress).max()


def test_bad_cells_and_stress_without_a_volume_are_named(calculator):
    with pytest.raises(ValueError, match="span no volume"):
        atoms_to_graph(
            Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]], cell=[3, 0, 3], pbc=True), CUTOFF
        )
    bad = box()
    bad.cell[1, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        atoms_to_graph(bad, CUTOFF)
    slab = box()
    slab.pbc = (True, True, False)
    slab.calc = calculator
    assert np.isfinite(slab.get_forces()).all()
    with pytest.raises(Exception, match="periodic in all three directions"):
        slab.get_stress()


def test_molecules_and_periodic_cells_batch_together():
    from ase.build import molecule

    from segnn.data import RadiusGraphCollate

    model = example_energy_model(cutoff=CUTOFF)
    structures = [box(), molecule("CH3CH2OH"), box(seed=1)]
    graphs = [atoms_to_graph(atoms, None, dtype=model.atom_reference.dtype) for atoms in structures]
    batch = RadiusGraphCollate(CUTOFF)(graphs)
    together = model(batch)
    for index, graph in enumerate(graphs):
        alone = model(RadiusGraphCollate(CUTOFF)([graph]))
        assert float(together["energy"][index]) == pytest.approx(
            float(alone["energy"][0]), rel=1e-12
        )
        rows = slice(int(batch.ptr[index]), int(batch.ptr[index + 1]))
        assert np.allclose(together["forces"][rows].numpy(), alone["forces"].numpy(), atol=1e-12)
