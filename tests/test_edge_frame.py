"""Message products in the edge frame: the rotations, the per-|m| products, whole models — all
equal to the ordinary path on the same weights, and equivariant."""

import pytest
import torch
from ase import Atoms
from ase.build import molecule
from e3nn import o3

import segnn
from segnn import EnergyModel
from segnn.o3 import ConditionedTensorProduct, SteerableMLP, spherical_harmonics_irreps
from segnn.o3.edge_frame import FrameLayout, FramePlan, edge_rotations, frame_rotations
from segnn.testing import (
    assert_model_equivariant,
    assert_same_outputs_and_gradients,
    example_batch,
    example_energy_model,
)

Y_AXIS = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)


def awkward_directions() -> torch.Tensor:
    """Random directions plus the poles, the xz plane and near-poles of both signs."""
    torch.manual_seed(0)
    special = torch.tensor(
        [
            [0.0, 1.0, 0.0],
            [0.0, -2.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 0.0, -3.0],
            [1e-9, -1.0, 0.0],
            [0.0, 1.0, 1e-12],
            [0.3, -1e-14, 0.4],
        ],
        dtype=torch.float64,
    )
    return torch.cat([special, torch.randn(40, 3, dtype=torch.float64)])


def test_rotations_take_each_edge_to_the_y_axis():
    vectors = awkward_directions()
    for l, rotation in enumerate(edge_rotations(vectors, 4), start=1):
        harmonics = o3.spherical_harmonics(l, vectors, True, normalization="component")
        target = o3.spherical_harmonics(l, Y_AXIS, True, normalization="component")
        assert (torch.einsum("eij,ej->ei", rotation, harmonics) - target).abs().max() < 1e-12
        identity = torch.eye(2 * l + 1, dtype=torch.float64)
        assert (rotation @ rotation.transpose(1, 2) - identity).abs().max() < 1e-12
    assert (torch.linalg.det(edge_rotations(vectors, 1)[0]) - 1).abs().max() < 1e-12


@pytest.mark.parametrize("lmax_attr", [1, 2, 3])
def test_product_in_the_frame_equals_the_ordinary_product(lmax_attr):
    torch.manual_seed(lmax_attr)
    attr_irreps = spherical_harmonics_irreps(lmax_attr)
    # repeated types and an output degree above the input's (3o: only through the attribute)
    irreps_in, irreps_out = o3.Irreps("5x0e+4x1o+3x2e+2x0e"), o3.Irreps("6x0e+3x1o+2x2e+1x1o+2x3o")
    product = ConditionedTensorProduct(irreps_in, attr_irreps, irreps_out).double()
    with torch.no_grad():
        product.bias.normal_()
    vectors = awkward_directions()
    attr = o3.spherical_harmonics(
        list(range(lmax_attr + 1)), vectors, True, normalization="component"
    )
    rotations = frame_rotations(vectors, 3)
    x = torch.randn(len(vectors), irreps_in.dim, dtype=torch.float64, requires_grad=True)
    ordinary = product(x, attr)
    layout_in, layout_out = FrameLayout(irreps_in), FrameLayout(irreps_out)
    framed = layout_out.from_frame(
        product.forward_frame(layout_in.to_frame(x, rotations)), rotations
    )
    assert (framed - ordinary).abs().max() < 1e-12 * ordinary.abs().max()
    weights = torch.randn_like(ordinary)
    grads = [
        torch.autograd.grad((y * weights).sum(), [x, *product.parameters()])
        for y in (ordinary, framed)
    ]
    for mine, theirs in zip(*grads):
        assert (mine - theirs).abs().max() < 1e-12 * theirs.abs().max().clamp(min=1)


def test_gated_mlp_in_the_frame_float32():
    torch.manual_seed(1)
    hidden = o3.Irreps("8x0e+4x1o+3x2e")
    mlp = SteerableMLP(
        o3.Irreps("9x0e+5x1o+2x2e"), hidden, hidden, spherical_harmonics_irreps(3), gate_output=True
    )
    vectors = awkward_directions().float()
    attr = o3.spherical_harmonics([0, 1, 2, 3], vectors, True, normalization="component")
    rotations = frame_rotations(vectors, 2)
    x = torch.randn(len(vectors), mlp.irreps_in.dim)
    ordinary = mlp(x, attr)
    parts = mlp.forward_frame(FrameLayout(mlp.irreps_in).to_frame(x, rotations))
    framed = FrameLayout(mlp.irreps_out).from_frame(parts, rotations)
    assert (framed - ordinary).abs().max() < 1e-5 * ordinary.abs().max()


def test_frame_needs_spherical_harmonic_attributes():
    product = ConditionedTensorProduct("2x0e+1x1o", "2x0e+1x1o", "2x0e+1x1o")
    with pytest.raises(ValueError, match="spherical-harmonic attributes"):
        FramePlan(product)


def outputs_and_gradients(model, batch):
    model.zero_grad()
    output = model(batch)
    output.pow(2).sum().backward()
    return output.detach(), [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(
    ("dtype", "tolerance", "normalization"),
    [
        (torch.float64, 1e-10, "component"),
        (torch.float32, 1e-5, "component"),
        (torch.float64, 1e-10, "integral"),
    ],
)
def test_model_with_edge_frame_equals_the_ordinary_model(dtype, tolerance, normalization):
    options = {
        "hidden_features": 32,
        "lmax_hidden": 2,
        "lmax_attr": 3,
        "num_layers": 2,
        "attribute_normalization": normalization,
    }
    batch = example_batch(dtype=dtype, names=("H2O", "CH3CH2OH", "CH3COOH", "HCN"))
    results = []
    for edge_frame in (False, True):
        torch.manual_seed(0)
        model = segnn.build_model({"model": options | {"edge_frame": edge_frame}}).to(dtype)
        results.append(outputs_and_gradients(model, batch))
    assert_same_outputs_and_gradients(results[1], results[0], tolerance)


def test_model_with_edge_frame_is_equivariant():
    torch.manual_seed(0)
    options = {"hidden_features": 24, "lmax_hidden": 2, "lmax_attr": 2, "num_layers": 2}
    model = segnn.build_model({"model": options | {"edge_frame": True}}).double()
    batch = example_batch(names=("CH3CH2OH", "C6H6", "CH3COOH"))
    assert assert_model_equivariant(model, batch, model.irreps_out, trials=3) < 1e-9


def energy_models_with_and_without_frame() -> tuple[EnergyModel, EnergyModel]:
    options = {"lmax_hidden": 2, "lmax_attr": 3}
    return (
        example_energy_model(**options, edge_frame=False),
        example_energy_model(**options, edge_frame=True),
    )


def awkward_structures() -> list[Atoms]:
    """Ethanol, and a molecule whose bonds lie along +y, -y and in the xz plane, where the
    frame rotation switches between its two formulas."""
    ethanol = molecule("CH3CH2OH")
    ethanol.rotate(37, (1, 2, 3))
    axes = Atoms(
        "CH4",
        positions=[[0, 0, 0], [0, 1.1, 0], [0, -1.1, 0], [1.1, 0, 0], [0, 1e-9, -1.1]],
    )
    return [ethanol, axes]


def test_energies_forces_and_force_training_through_the_frame_equal_the_ordinary_path():
    ordinary, framed = energy_models_with_and_without_frame()
    results = []
    for model in (ordinary, framed):
        (batch,) = model.batches(awkward_structures(), batch_size=2)
        model.zero_grad()
        energy, forces = model.normalized(batch, create_graph=True)
        # a force loss: its parameter gradients differentiate through -dE/dx (double backward)
        (energy.pow(2).sum() + forces.pow(2).sum()).backward()
        gradients = [p.grad.detach().clone() for p in model.parameters()]
        results.append((energy.detach(), forces.detach(), gradients))
    (energy, forces, gradients), (energy_f, forces_f, gradients_f) = results
    assert forces.abs().max() > 1e-3  # forces worth comparing
    assert (energy_f - energy).abs().max() <= 1e-10 * energy.abs().max()
    assert (forces_f - forces).abs().max() <= 1e-10 * forces.abs().max()
    scale = max(float(g.abs().max()) for g in gradients)
    for mine, theirs in zip(gradients_f, gradients):
        assert (mine - theirs).abs().max() <= 1e-10 * scale


def test_forces_through_the_frame_are_equivariant():
    _, framed = energy_models_with_and_without_frame()
    (batch,) = framed.batches(awkward_structures(), batch_size=2)
    assert_model_equivariant(lambda data: framed(data)["forces"], batch, "1x1o", per_node=True)
