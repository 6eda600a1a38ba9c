"""The parity harness: every backend computes the same function as the ``e3nn`` reference.

Every backend in :data:`segnn.backends.BACKENDS` is run on every model case it supports
(QM9-style property models on paired and unpaired graphs, both weight parameterisations; an
energy model with radial weights and an envelope; the N-body model with velocity attributes and
charge products) and compared with the reference on the same weights: outputs, parameter
gradients, position gradients (forces) where it declares ``forces``, and the parameter gradients
of a force loss (second derivatives) where it declares ``force_training``; float64 to 1e-10,
float32 to 1e-5. Each is also checked for E(3) equivariance with the test kit. A new backend
is tested by adding it to ``BACKENDS``; nothing here names one, except the reference.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ase import Atoms
from torch_geometric.data import Batch, Data

from segnn.backends import BACKENDS, make_backend
from segnn.config import ModelConfig
from segnn.data import RadiusGraphCollate, atoms_to_graph
from segnn.data.nbody import FullGraphCollate, initial_state, node_inputs, simulate
from segnn.models import SEGNN, use_backend
from segnn.testing import (
    assert_model_equivariant,
    assert_same_outputs_and_gradients,
    example_batch,
    example_energy_model,
)

REFERENCE = "e3nn"
DEVICE = torch.device(os.environ.get("SEGNN_TEST_DEVICE", "cpu"))  # scripts/gpu_check.sh: cuda
# no highly symmetric molecules (CH4, C6H6, CF4): their vector features vanish by symmetry, and
# the instance norm of ~0 vectors amplifies float32 rounding differently on each path
MOLECULES = ("H2O", "CH3CH2OH", "CH3COOH", "HCN")


def qm9_model(parameterization: str = "normalized", **options) -> SEGNN:
    torch.manual_seed(0)
    return SEGNN(
        ModelConfig(
            hidden_features=32,
            lmax_hidden=2,
            lmax_attr=3,
            num_layers=2,
            parameterization=parameterization,
            normalize_activations=parameterization == "standard",
            **options,
        )
    )


def awkward_batch(dtype: torch.dtype) -> Batch:
    """Ethanol, and a molecule whose bonds lie along +y, -y and in the xz plane, where the edge
    frame's rotation switches between its two formulas (derivatives must not notice)."""
    from ase.build import molecule

    ethanol = molecule("CH3CH2OH")
    ethanol.rotate(37, (1, 2, 3))
    axes = Atoms(
        "CH4",
        positions=[[0, 0, 0], [0, 1.1, 0], [0, -1.1, 0], [1.1, 0, 0], [0, 1e-9, -1.1]],
    )
    return RadiusGraphCollate(4.0)([atoms_to_graph(m, None, dtype) for m in (ethanol, axes)])


def unpaired_batch(dtype: torch.dtype) -> Batch:
    """Molecules batched by PyG from single radius graphs: edges not in the paired layout."""
    from ase.build import molecule

    return Batch.from_data_list([atoms_to_graph(molecule(n), 2.0, dtype) for n in MOLECULES])


def nbody_batch(dtype: torch.dtype) -> Batch:
    positions, velocities, charges = initial_state(3, np.random.default_rng(0))
    positions, velocities = simulate(positions, velocities, charges, 100)
    items = []
    for pos, vel, charge in zip(positions, velocities, charges):
        pos, vel = torch.as_tensor(pos, dtype=dtype), torch.as_tensor(vel, dtype=dtype)
        charge = torch.as_tensor(charge, dtype=dtype).unsqueeze(-1)
        items.append(Data(pos=pos, vel=vel, charge=charge, x=node_inputs(pos, vel, charge)))
    return FullGraphCollate()(items)


def nbody_model() -> SEGNN:
    torch.manual_seed(0)
    return SEGNN(
        ModelConfig(
            hidden_features=24,
            lmax_hidden=1,
            lmax_attr=1,
            num_layers=2,
            task="node",
            output_irreps="1x1o",
            input_irreps="2x0e + 1x1o",
            velocity_attribute=True,
            charge_product=True,
            radial="distance",
        )
    )


# name: (model factory, batch factory(dtype), output irreps, per-node output, vector keys)
CASES = {
    "qm9": (
        qm9_model,
        lambda dtype: example_batch(dtype=dtype, names=MOLECULES),
        "1x0e",
        False,
        (),
    ),
    "qm9_standard": (
        lambda: qm9_model("standard"),
        lambda dtype: example_batch(dtype=dtype, names=MOLECULES),
        "1x0e",
        False,
        (),
    ),
    "qm9_unpaired": (qm9_model, unpaired_batch, "1x0e", False, ()),
    "qm9_integral": (
        lambda: qm9_model(attribute_normalization="integral"),
        lambda dtype: example_batch(dtype=dtype, names=MOLECULES),
        "1x0e",
        False,
        (),
    ),
    "energy": (
        lambda: example_energy_model().network,
        lambda dtype: example_batch(cutoff=4.0, dtype=dtype, names=MOLECULES[:3]),
        "1x0e",
        False,
        (),
    ),
    "energy_axes": (
        lambda: example_energy_model(lmax_hidden=2, lmax_attr=3).network,
        awkward_batch,
        "1x0e",
        False,
        (),
    ),
    "nbody": (nbody_model, nbody_batch, "1x1o", True, ("vel",)),
}


def needs(case: str) -> dict:
    return {"radial_weights": case.startswith("energy")}


def build(case: str, backend: str, dtype: torch.dtype, **use) -> tuple[SEGNN, Batch]:
    make_model, make_batch, *_ = CASES[case]
    model = make_model().to(device=DEVICE, dtype=dtype)
    missing = BACKENDS[backend].capabilities.missing(DEVICE, dtype, **needs(case), **use)
    if missing:
        pytest.skip(f"{backend} does not support {', '.join(missing)}")
    use_backend(model, backend, **use)
    return model, make_batch(dtype).to(DEVICE)


def outputs_and_gradients(model: SEGNN, batch: Batch):
    model.zero_grad()
    output = model(batch)
    output.pow(2).sum().backward()
    return output.detach().clone(), [
        torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()
    ]


def forces_and_force_gradients(model: SEGNN, batch: Batch, second: bool):
    """``-d(Σ out²)/dx`` and, with ``second``, the parameter gradients of ``Σ forces²``."""
    batch = batch.clone()
    batch.pos = batch.pos.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(model(batch).pow(2).sum(), batch.pos, create_graph=second)
    forces = -gradient
    if not second:
        return forces.detach(), []
    parameters = list(model.parameters())
    gradients = torch.autograd.grad(forces.pow(2).sum(), parameters, allow_unused=True)
    return forces.detach(), [
        torch.zeros_like(p) if g is None else g for p, g in zip(parameters, gradients)
    ]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", [name for name in BACKENDS if name != REFERENCE])
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_outputs_and_parameter_gradients_match_the_reference(case, backend, dtype, tolerance):
    model, batch = build(case, backend, dtype)
    actual = outputs_and_gradients(model, batch)
    use_backend(model, REFERENCE)
    expected = outputs_and_gradients(model, batch)
    assert_same_outputs_and_gradients(actual, expected, tolerance, f"{backend}/{case}")


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", [name for name in BACKENDS if name != REFERENCE])
def test_forces_and_their_gradients_match_the_reference(case, backend):
    capabilities = BACKENDS[backend].capabilities
    second = capabilities.force_training
    model, batch = build(case, backend, torch.float64, forces=True)
    actual = forces_and_force_gradients(model, batch, second)
    use_backend(model, REFERENCE)
    expected = forces_and_force_gradients(model, batch, second)
    if second:
        assert_same_outputs_and_gradients(actual, expected, 1e-10, f"{backend}/{case}")
    else:
        error = (actual[0] - expected[0]).abs().max()
        assert error <= 1e-10 * expected[0].abs().max(), f"{backend}/{case} forces: {error:.3e}"


@pytest.mark.parametrize(
    ("case", "training"),
    [(case, False) for case in CASES] + [("energy", True), ("qm9_unpaired", True)],
)
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_messages_in_parts_equal_all_edges_at_once(case, backend, training):
    """Messages a few edges at a time (an odd part size splits the graphs anywhere; in
    evaluation mode the parts are recomputed in the backward pass) give the same outputs,
    parameter gradients, forces and second derivatives as all edges at once."""
    capabilities = BACKENDS[backend].capabilities
    model, batch = build(case, backend, torch.float64)
    model.train(training)
    results = []
    for edge_chunk in (None, 7):
        use_backend(model, backend, forces=capabilities.forces, edge_chunk=edge_chunk)
        result = [outputs_and_gradients(model, batch)]
        if capabilities.forces:
            result.append(forces_and_force_gradients(model, batch, capabilities.force_training))
        results.append(result)
    for whole, parts in zip(*results):
        assert_same_outputs_and_gradients(parts, whole, 1e-10, f"{backend}/{case} in parts")


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_backend_is_equivariant(case, backend):
    model, batch = build(case, backend, torch.float64)
    _, _, irreps_out, per_node, vector_keys = CASES[case]
    if case == "nbody":  # the node inputs are functions of the transformed state

        def function(data):
            data = data.clone()
            data.x = node_inputs(data.pos, data.vel, data.charge, data.batch)
            return model(data)

    else:
        function = model
    with torch.no_grad():
        assert_model_equivariant(function, batch, irreps_out, per_node, vector_keys)


@pytest.mark.parametrize("case", ["energy", "energy_axes"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_forces_are_equivariant(case, backend):
    model, batch = build(case, backend, torch.float64, forces=True)

    def forces(data):
        data = data.clone()
        data.pos = data.pos.detach().requires_grad_(True)
        return -torch.autograd.grad(model(data).sum(), data.pos)[0]

    assert_model_equivariant(forces, batch, "1x1o", per_node=True)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_capabilities_are_enforced_by_name(backend):
    capabilities = BACKENDS[backend].capabilities
    if not capabilities.force_training:
        with pytest.raises(ValueError, match="second derivatives"):
            make_backend(backend, force_training=True)
    if not capabilities.radial_weights:
        with pytest.raises(ValueError, match="radial weights"):
            make_backend(backend, radial_weights=True)
    assert make_backend(backend).name == backend


def test_auto_picks_a_backend_that_supports_the_use():
    assert make_backend("auto", force_training=True).capabilities.force_training
    assert make_backend("auto", radial_weights=True, forces=True).capabilities.forces
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        make_backend("fast")


def test_the_backend_is_not_saved_with_the_weights():
    model = qm9_model()
    keys = set(model.state_dict())
    use_backend(model, REFERENCE)
    assert set(model.state_dict()) == keys


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_backend_does_not_keep_its_models_alive(backend):
    import gc
    import weakref

    model, batch = build("qm9", backend, torch.float64)
    used = model.backend
    model(batch)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
    assert not len(getattr(used, "products", ())), "cached products outlive their model"
