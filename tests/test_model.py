"""SEGNN layers and models: equivariance, batching, isolated atoms, determinism, errors."""

import pytest
import torch
from ase import Atoms
from ase.build import molecule
from torch_geometric.data import Batch

import segnn
from segnn.backends import Geometry, make_backend
from segnn.config import ModelConfig
from segnn.data import atoms_to_graph
from segnn.models import SEGNNLayer
from segnn.o3 import SphericalHarmonicsAttributes, balanced_irreps
from segnn.testing import (
    E3Transform,
    EquivarianceError,
    assert_model_equivariant,
    compare,
    example_batch,
)


def small_model(dtype=torch.float64, seed=0, **model):
    torch.manual_seed(seed)
    options = {"hidden_features": 24, "lmax_hidden": 2, "lmax_attr": 2, "num_layers": 2} | model
    return segnn.build_model(ModelConfig(**options)).to(dtype)


@pytest.mark.parametrize("lmax_attr", [1, 2, 3])
@pytest.mark.parametrize("norm", ["instance", "none"])
def test_graph_model_is_invariant(batch64, lmax_attr, norm):
    model = small_model(lmax_attr=lmax_attr, norm=norm)
    assert assert_model_equivariant(model, batch64, model.irreps_out) < 1e-9


@pytest.mark.parametrize(
    "options",
    [
        {"attribute_normalization": "integral"},
        {"hidden_allocation": "weights", "lmax_hidden": 1},
        {"parameterization": "standard", "normalize_activations": True},
    ],
)
def test_model_variants_are_invariant(batch64, options):
    model = small_model(**options)
    assert assert_model_equivariant(model, batch64, model.irreps_out) < 1e-9


@pytest.mark.parametrize("lmax_attr", [1, 2, 3])
def test_node_model_outputs_vectors(batch64, lmax_attr):
    model = small_model(lmax_attr=lmax_attr, task="node", output_irreps="1x1o+1x0e")
    out = model(batch64)
    assert out.shape == (batch64.num_nodes, 4)
    assert_model_equivariant(model, batch64, model.irreps_out, per_node=True)


def test_graph_model_with_vector_and_higher_outputs(batch64):
    model = small_model(output_irreps="2x0e+1x1o+1x2e")
    assert model(batch64).shape == (batch64.num_graphs, 10)
    assert_model_equivariant(model, batch64, model.irreps_out)


def test_float32_model_within_relative_tolerance(batch32):
    model = small_model(dtype=torch.float32, lmax_attr=3, output_irreps="1x0e+1x1o")
    assert_model_equivariant(model, batch32, model.irreps_out)


def test_kit_flags_model_with_broken_gate(batch64, monkeypatch):
    model = small_model()
    monkeypatch.setattr(
        segnn.o3.gate.Gate,
        "forward",
        lambda self, x: torch.nn.functional.silu(x[..., : self.irreps_out.dim]),
    )
    with pytest.raises(EquivarianceError):
        assert_model_equivariant(model, batch64, model.irreps_out)


@pytest.mark.parametrize("lmax_attr", [1, 2, 3])
@pytest.mark.parametrize("backend", ["plain", "edge_frame"])
def test_layer_is_rotation_reflection_and_permutation_equivariant(batch64, lmax_attr, backend):
    torch.manual_seed(0)
    backend = make_backend(backend)
    hidden = balanced_irreps(24, 2)
    attributes = SphericalHarmonicsAttributes(lmax_attr)
    layer = SEGNNLayer(hidden, attributes.irreps, norm=True).double()
    features = torch.randn(batch64.num_nodes, hidden.dim, dtype=torch.float64)

    def run(data, h):
        vectors = data.pos[data.edge_index[0]] - data.pos[data.edge_index[1]]
        edge_attr = attributes.edge_attributes(vectors)
        node_attr = attributes.node_attributes(edge_attr, data.edge_index[1], data.num_nodes)
        scalars = vectors.pow(2).sum(-1, keepdim=True)
        geometry = Geometry(
            data.edge_index, vectors, edge_attr, scalars, None, node_attr, data.batch, True
        )
        return layer(h, backend.frames(geometry, hidden.lmax), backend)

    reference = run(batch64, features)
    for trial in range(4):
        transform = E3Transform.random(batch64, reflection=trial % 2 == 1)
        moved_features = transform.transform_output(features, hidden, per_node=True)
        expected = transform.transform_output(reference, hidden, per_node=True)
        compare(expected, run(transform.apply(batch64), moved_features), f"layer trial {trial}")


def test_molecule_alone_equals_molecule_in_batch(batch64):
    model = small_model()
    batched = model(batch64)
    for index, name in enumerate(["CH4", "H2O", "CH3CH2OH"]):
        alone = model(
            Batch.from_data_list([atoms_to_graph(molecule(name), 2.0, dtype=torch.float64)])
        )
        assert torch.allclose(alone[0], batched[index], atol=1e-12)


def test_isolated_atoms_work():
    model = small_model()
    atoms = Atoms("OHH", positions=[[0, 0, 0], [5, 0, 0], [0, 7, 0]])
    data = atoms_to_graph(atoms, 2.0, dtype=torch.float64)
    assert data.edge_index.shape[1] == 0
    out = model(Batch.from_data_list([data, atoms_to_graph(Atoms("H"), 2.0, dtype=torch.float64)]))
    assert out.shape == (2, 1) and torch.isfinite(out).all()


def test_seeded_models_are_deterministic(batch64):
    first = small_model(seed=3)(batch64)
    second = small_model(seed=3)(batch64)
    third = small_model(seed=4)(batch64)
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


def test_output_scale_at_initialisation_paper_size():
    batch = example_batch(cutoff=2.0, dtype=torch.float32)
    torch.manual_seed(0)
    model = segnn.build_model(segnn.load_config("configs/qm9.yaml")).network
    out = model(batch)
    assert torch.isfinite(out).all()
    assert out.abs().max() < 10


def test_quick_config_builds_and_is_invariant():
    torch.manual_seed(0)
    model = segnn.build_model(segnn.load_config("configs/qm9_quick.yaml")).network.double()
    batch = example_batch(names=["CH3CH2OH", "C6H6", "CH3COOH"])
    assert model(batch).shape == (3, 1)
    assert_model_equivariant(model, batch, model.irreps_out, trials=2)


def test_unknown_element_is_named():
    model = small_model()
    data = atoms_to_graph(molecule("SiH4"), 2.0, dtype=torch.float64)
    with pytest.raises(ValueError, match="Si"):
        model(Batch.from_data_list([data]))


@pytest.mark.parametrize(
    "atoms,message",
    [
        (Atoms(), "no atoms"),
        (Atoms("CH", positions=[[0, 0, 0], [float("nan"), 0, 0]]), "non-finite"),
        (Atoms("X", positions=[[0, 0, 0]]), "unknown element"),
    ],
)
def test_atoms_to_graph_rejects_bad_input(atoms, message):
    with pytest.raises(ValueError, match=message):
        atoms_to_graph(atoms, 2.0)


def test_integral_attributes_are_the_component_ones_over_sqrt_4pi():
    vectors = torch.randn(10, 3, dtype=torch.float64)
    component, integral = (
        SphericalHarmonicsAttributes(2, norm) for norm in ("component", "integral")
    )
    scale = (4 * torch.pi) ** 0.5
    assert torch.allclose(
        integral.edge_attributes(vectors) * scale, component.edge_attributes(vectors)
    )
    target = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3, 3, 3])
    nodes = integral.node_attributes(integral.edge_attributes(vectors), target, 5)
    assert torch.allclose(nodes[:, 0], torch.full((5,), 1 / scale, dtype=torch.float64))
    with pytest.raises(ValueError, match="normalization"):
        SphericalHarmonicsAttributes(2, "norm")
