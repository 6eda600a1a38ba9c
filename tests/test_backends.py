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


def evaluate_published_layout(product, x: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
    """``product(x, attr)`` from nothing but its published layout: instructions, weight views,
    bias columns, and e3nn's Clebsch-Gordan coefficients."""
    from e3nn import o3

    inputs = dict(enumerate(x.split([mul * ir.dim for mul, ir in product.irreps_in], dim=1)))
    attr_blocks = attr.split([mul * ir.dim for mul, ir in product.irreps_attr], dim=1)
    out = [x.new_zeros(len(x), mul, ir.dim) for mul, ir in product.irreps_out]
    for path, weight in zip(product.instructions, product.weight_views()):
        mul_in, ir_in = product.irreps_in[path.input]
        ir_attr = product.irreps_attr[path.attribute].ir
        ir_out = product.irreps_out[path.output].ir
        a = attr_blocks[path.attribute].view(len(x), -1, ir_attr.dim)[:, path.copy]
        cg = o3.wigner_3j(ir_in.l, ir_attr.l, ir_out.l, dtype=x.dtype)
        features = inputs[path.input].view(len(x), mul_in, ir_in.dim)
        out[path.output] += path.path_weight * torch.einsum(
            "uw,ijk,zui,zj->zwk", weight, cg, features, a
        )
    y = torch.cat([block.flatten(1) for block in out], dim=1)
    return y.index_add(1, product.bias_columns, product.bias.expand(len(x), -1))


@pytest.mark.parametrize("case", list(CASES))
def test_the_published_weight_layout_is_the_product(case):
    """The contract backends read (instructions, weight views, bias columns) computes every
    product of the model: a backend built on it computes the same function."""
    from segnn.o3 import ConditionedTensorProduct

    model = CASES[case][0]().double()
    products = [m for m in model.modules() if isinstance(m, ConditionedTensorProduct)]
    generator = torch.Generator().manual_seed(0)
    for product in products:
        with torch.no_grad():
            product.bias.normal_(generator=generator)
        x = torch.randn(5, product.in_dim, generator=generator, dtype=torch.float64)
        attr = torch.randn(5, product.attr_dim, generator=generator, dtype=torch.float64)
        expected = product(x, attr)
        error = (evaluate_published_layout(product, x, attr) - expected).abs().max()
        assert error <= 1e-12 * expected.abs().max(), f"{product}: {error:.2e}"
        index = torch.cat(
            [v.flatten() for v in product.weight_views(torch.arange(product.weight_numel))]
        )
        assert torch.equal(index.sort().values, torch.arange(product.weight_numel))


def test_a_registered_backend_is_used_everywhere_without_other_edits():
    """A new backend is one subclass and one registration: chosen by name, it computes."""
    from segnn.backends import PlainBackend, register, unregister

    calls = {"messages": 0, "update": 0}

    class CountingBackend(PlainBackend):
        name = "counting"

        def propagates(self, geometry):
            return False  # every layer through the backend's own convolve

        def messages(self, layer, h, geometry):
            calls["messages"] += 1
            return super().messages(layer, h, geometry)

        def update(self, layer, h, aggregated, geometry):
            calls["update"] += 1
            return super().update(layer, h, aggregated, geometry)

    register(CountingBackend)
    try:
        model, batch = build("qm9", "counting", torch.float64)
        actual = outputs_and_gradients(model, batch)
        assert calls == {"messages": 2, "update": 2}  # two layers
        use_backend(model, REFERENCE)
        expected = outputs_and_gradients(model, batch)
        assert_same_outputs_and_gradients(actual, expected, 1e-10, "counting")
        assert "counting" in segnn_backend_names()
        with pytest.raises(ValueError, match="already registered"):
            register(CountingBackend)
    finally:
        unregister("counting")
    assert "counting" not in BACKENDS


def segnn_backend_names() -> list[str]:
    from segnn.backends import names

    return names()


@pytest.mark.parametrize("backend", ["plain", "e3nn"])
def test_reference_backends_run_pyg_propagate(backend):
    """PyG's message hooks see every edge's message on the reference path; fast backends take
    the fused hook (message_and_aggregate) and no per-edge message."""
    model, batch = build("qm9", backend, torch.float64)
    seen = []
    for layer in model.layers:
        layer.register_message_forward_hook(lambda module, inputs, out: seen.append(out.shape))
    model(batch)
    assert seen == [(batch.edge_index.shape[1], model.irreps_hidden.dim)] * len(model.layers)
    seen.clear()
    use_backend(model, "edge_frame")
    model(batch)
    assert seen == []


def test_explain_masks_messages_on_every_backend():
    """PyG's explain mode (edge masks on messages) works whatever the backend: the layer then
    runs propagate, with the backend's products."""
    from torch_geometric.explain.algorithm.utils import clear_masks, set_masks

    model, batch = build("qm9", "edge_frame", torch.float64)
    with torch.no_grad():
        unmasked = model(batch)
        mask = torch.zeros(batch.edge_index.shape[1], dtype=torch.float64)
        mask[::2] = 1.0
        set_masks(model, mask, batch.edge_index, apply_sigmoid=False)
        masked = {}
        for backend in ("edge_frame", "plain", REFERENCE):
            use_backend(model, backend)
            masked[backend] = model(batch)
        clear_masks(model)
        use_backend(model, "edge_frame")
        assert torch.equal(model(batch), unmasked)
    assert (masked["edge_frame"] - unmasked).abs().max() > 1e-3
    for backend in ("plain", REFERENCE):
        assert (masked["edge_frame"] - masked[backend]).abs().max() < 1e-10


def test_decomposed_layers_are_refused():
    model = qm9_model()
    with pytest.raises(ValueError, match="cannot decompose"):
        model.layers[0].decomposed_layers = 2


def test_a_backend_made_once_is_checked_against_each_model():
    model = example_energy_model().network
    with pytest.raises(ValueError, match="radial weights"):
        use_backend(model, make_backend("cpu_kernels"))
    shared = make_backend("edge_frame")
    assert use_backend(model, shared) is shared and model.backend is shared
