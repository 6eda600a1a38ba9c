"""Energy models: forces = -dE/dx, smoothness at the cutoff, E(3) symmetry, the ASE calculator."""

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.io import read
from torch_geometric.data import Batch

from segnn import EnergyModel, SEGNNCalculator
from segnn.data import atoms_to_graph
from segnn.o3 import BesselBasis, PolynomialEnvelope
from segnn.testing import (
    assert_model_equivariant,
    example_energy_model,
    finite_difference_forces,
)

ETHANOL = Path(__file__).parents[1] / "data" / "ethanol" / "ethanol_gfn2xtb_500K.extxyz"


def ethanol_frames(count: int) -> list[Atoms]:
    return read(ETHANOL, index=f":{count}")


def batch_of(model: EnergyModel, frames: list[Atoms]) -> Batch:
    (batch,) = model.batches(frames, batch_size=len(frames))
    return batch


def energy_of(model: EnergyModel):
    return lambda atoms: float(model(batch_of(model, [atoms]), forces=False)["energy"][0])


# ------------------------------------------------------------------------------ radial parts
def test_envelope_vanishes_smoothly_at_the_cutoff():
    envelope = PolynomialEnvelope(cutoff=3.0, exponent=6)
    r = torch.tensor([0.0, 1.5, 3.0 - 1e-6, 3.0, 3.5], dtype=torch.float64, requires_grad=True)
    u = envelope(r)
    (first,) = torch.autograd.grad(u.sum(), r, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), r)
    u, first, second = u.detach(), first.detach(), second.detach()
    assert u[0] == 1.0 and 0 < u[1] < 1 and u[3] == 0 and u[4] == 0
    # a triple zero at the cutoff, up to rounding in the polynomial's cancelling terms
    assert (
        abs(float(u[2])) < 1e-13
        and abs(float(first[2])) < 1e-8
        and abs(float(second[2])) < 1e-3 < abs(float(second[1]))
    )
    assert float(first[1]) < 0  # decreasing inside


def test_bessel_basis_vanishes_at_the_cutoff_and_is_finite_inside():
    basis = BesselBasis(cutoff=5.0, num_basis=8)
    values = basis(torch.tensor([0.3, 2.5, 5.0], dtype=torch.float64))
    assert values.shape == (3, 8) and torch.isfinite(values).all()
    assert values[2].abs().max() < 1e-15


# ---------------------------------------------------------------------------- force physics
@pytest.mark.parametrize("seed", [0, 1])
def test_forces_equal_finite_differences_random_weights(seed):
    model = example_energy_model(seed=seed)
    atoms = ethanol_frames(1)[0]
    forces = model(batch_of(model, [atoms]))["forces"].numpy()
    reference = finite_difference_forces(energy_of(model), atoms)
    scale = np.abs(reference).max()
    assert scale > 1e-3  # a force field worth checking
    assert np.abs(forces - reference).max() <= 1e-6 * scale


def test_forces_are_minus_gradient_per_structure_in_a_batch():
    model = example_energy_model()
    frames = ethanol_frames(3)
    together = model(batch_of(model, frames))["forces"]
    alone = torch.cat([model(batch_of(model, [atoms]))["forces"] for atoms in frames])
    assert torch.allclose(together, alone, atol=1e-12)


def test_energy_invariant_and_forces_equivariant():
    model = example_energy_model()
    batch = batch_of(model, ethanol_frames(2) + [molecule("CH4"), molecule("H2O")])

    assert_model_equivariant(lambda data: model(data)["energy"].unsqueeze(1), batch, "1x0e")
    assert_model_equivariant(lambda data: model(data)["forces"], batch, "1x1o", per_node=True)


def test_energy_and_forces_continuous_across_the_cutoff():
    cutoff = 3.0
    model = example_energy_model(cutoff=cutoff)
    water = molecule("H2O")
    water.positions -= water.positions[0]
    energies, forces = [], []
    for offset in (-1e-7, -1e-9, 1e-9, 1e-7):
        system = water + Atoms("C", positions=[[cutoff + offset, 0.0, 0.0]])
        output = model(batch_of(model, [system]))
        energies.append(float(output["energy"][0]))
        forces.append(output["forces"].numpy())
    assert abs(energies[1] - energies[2]) <= 1e-8  # just inside vs just outside the O-C cutoff
    assert max(abs(e - energies[0]) for e in energies) <= 1e-8
    assert np.abs(forces[1] - forces[2]).max() <= 1e-6
    # and the carbon does feel the molecule well inside the cutoff
    inside = water + Atoms("C", positions=[[cutoff - 0.5, 0.0, 0.0]])
    assert (
        abs(float(model(batch_of(model, [inside]), forces=False)["energy"][0]) - energies[0]) > 1e-4
    )


def test_total_energy_is_per_element_reference_plus_network():
    model = example_energy_model()
    atoms = molecule("CH3CH2OH")
    batch = batch_of(model, [atoms])
    network = float(model.network(batch)[0, 0].detach())
    expected = 2 * -48.2 + 6 * -10.7 - 77.3 + 0.9 * network
    assert float(model(batch, forces=False)["energy"][0]) == pytest.approx(expected, abs=1e-10)


# ------------------------------------------------------------------------------ calculator
def test_calculator_matches_model_and_runs_optimizer_and_dynamics(tmp_path):
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.verlet import VelocityVerlet
    from ase.optimize import BFGS

    model = example_energy_model()
    atoms = ethanol_frames(1)[0]
    atoms.calc = SEGNNCalculator(model, device="cpu")
    output = model(batch_of(model, [atoms]))
    assert atoms.get_potential_energy() == pytest.approx(float(output["energy"][0]), abs=1e-10)
    assert atoms.get_potential_energy(force_consistent=True) == atoms.get_potential_energy()
    assert np.allclose(atoms.get_forces(), output["forces"].numpy(), atol=1e-12)

    start = atoms.get_potential_energy()
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=30)
    assert atoms.get_potential_energy() < start

    VelocityVerlet(atoms, 0.5 * units.fs, trajectory=str(tmp_path / "nve.traj")).run(5)
    Langevin(
        atoms,
        0.5 * units.fs,
        temperature_K=300,
        friction=0.01 / units.fs,
        rng=np.random.default_rng(0),
        fixcm=False,
    ).run(5)
    assert len(read(tmp_path / "nve.traj", ":")) == 6
    assert np.isfinite(atoms.get_forces()).all()


def test_calculator_float32_is_close_to_float64():
    model = example_energy_model()
    atoms = ethanol_frames(1)[0]
    exact = SEGNNCalculator(model, device="cpu").get_forces(atoms)
    single = SEGNNCalculator(model, device="cpu", dtype=torch.float32).get_forces(atoms)
    assert np.abs(single - exact).max() <= 1e-4 * np.abs(exact).max()


@pytest.mark.parametrize(
    ("atoms", "message"),
    [
        (Atoms("CN", positions=[[0, 0, 0], [1.2, 0, 0]]), "N not known"),
        (Atoms("CH", positions=[[0, 0, 0], [np.nan, 0, 0]]), "non-finite"),
        (Atoms(), "no atoms"),
        (Atoms("CH", positions=[[0, 0, 0], [1.1, 0, 0]], cell=[5, 0, 5], pbc=True), "no volume"),
    ],
)
def test_calculator_rejects_bad_structures_clearly(atoms, message):
    calculator = SEGNNCalculator(example_energy_model(), device="cpu")
    with pytest.raises(ValueError, match=message):
        calculator.get_potential_energy(atoms)


def test_calculator_refuses_a_property_model():
    import segnn

    config = {"model": {"hidden_features": 8, "lmax_hidden": 1, "num_layers": 1}}
    property_model = segnn.build_model(config)
    assert isinstance(property_model, segnn.PropertyModel)
    with pytest.raises(TypeError, match="energy model.*for 'homo'"):
        SEGNNCalculator(property_model)
    with pytest.raises(TypeError, match="bare SEGNN network: segnn.build_model"):
        SEGNNCalculator(property_model.network)


def test_calculator_takes_build_model_of_a_force_field_config():
    from ase.build import molecule

    import segnn

    torch.manual_seed(0)
    model = segnn.build_model(
        segnn.load_config("configs/ethanol_forces.yaml", ["model.hidden_features=8"])
    )
    assert isinstance(model, segnn.EnergyModel)
    atoms = molecule("CH3CH2OH")
    atoms.calc = SEGNNCalculator(model)
    assert atoms.get_forces().shape == (9, 3)
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.calc.backend.capabilities.forces


def test_committee_returns_the_mean_and_the_spread_of_its_models():
    first, second = example_energy_model(seed=0), example_energy_model(seed=1)
    atoms = ethanol_frames(1)[0]
    alone = []
    for model in (first, second):
        atoms.calc = SEGNNCalculator(model)
        alone.append((atoms.get_potential_energy(), atoms.get_forces()))
    atoms.calc = SEGNNCalculator([first, second])
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    (e1, f1), (e2, f2) = alone
    assert abs(energy - (e1 + e2) / 2) < 1e-9 and np.allclose(forces, (f1 + f2) / 2, atol=1e-12)
    # two members: each sits half their difference away from the mean
    assert abs(atoms.calc.results["energy_spread"] - abs(e1 - e2) / 2) < 1e-9
    expected = np.linalg.norm(f1 - f2, axis=1) / 2
    assert np.allclose(atoms.calc.results["forces_spread"], expected, atol=1e-12)
    assert expected.min() > 1e-6  # different weights disagree everywhere
    # one backend chosen for the whole committee
    assert all(member.network.backend is atoms.calc.backend for member in atoms.calc.models)


def test_committee_of_one_model_twice_has_no_spread():
    model = example_energy_model()
    atoms = ethanol_frames(1)[0]
    atoms.calc = SEGNNCalculator([model, model])
    atoms.get_forces()
    assert atoms.calc.results["energy_spread"] < 1e-12
    assert np.abs(atoms.calc.results["forces_spread"]).max() < 1e-12
    with pytest.raises(ValueError, match="at least one"):
        SEGNNCalculator([])


def test_atoms_to_graph_rejects_bad_structures():
    with pytest.raises(ValueError, match="no atoms"):
        atoms_to_graph(Atoms(), 3.0)
