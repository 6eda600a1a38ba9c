"""EMLP's equivariant-basis solver: known dimensions, verified bases, and the cross-check of the
Clebsch-Gordan coefficients our tensor products use."""

from pathlib import Path

import pytest
import torch
from e3nn import o3

from segnn.emlp import (
    O13,
    SO,
    SO13,
    D,
    Hom,
    O,
    S,
    Sp,
    SphericalHarmonicRep,
    T,
    V,
    Z,
    direct_product,
    equivariant_basis,
)


def dimension(rep) -> int:
    return equivariant_basis(rep).dimension


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_permutation_and_cyclic_groups(n):
    assert dimension(Hom(V(S(n)), V(S(n)))) == 2  # DeepSets: identity and all-ones
    assert dimension(Hom(V(Z(n)), V(Z(n)))) == n  # circulant matrices
    if n >= 4:
        assert dimension(Hom(T(2, 0, S(n)), T(2, 0, S(n)))) == 15  # Bell number B_4


@pytest.mark.parametrize("n", [3, 4, 5])
def test_rotation_groups(n):
    assert dimension(Hom(V(SO(n)), V(SO(n)))) == 1


def test_invariant_tensors_of_rotations_reflections_lorentz_symplectic():
    assert dimension(T(2, 0, SO(3))) == 1  # δ
    assert dimension(T(3, 0, SO(3))) == 1  # ε
    assert dimension(T(3, 0, O(3))) == 0  # ε is a pseudo-tensor
    assert dimension(T(4, 0, SO(3))) == 3  # δδ in three pairings
    assert dimension(T(0, 2, SO13())) == 1  # the Minkowski metric
    assert dimension(T(0, 2, O13())) == 1
    assert dimension(T(4, 0, SO13())) == 4  # three ηη pairings and ε
    assert dimension(T(4, 0, O13())) == 3  # ε is odd under parity
    assert dimension(T(2, 0, Sp(2))) == 1  # the symplectic form


@pytest.mark.parametrize(
    "group,rep_in,rep_out",
    [
        (S(4), lambda g: T(2, 0, g), lambda g: T(2, 0, g)),
        (D(5), lambda g: V(g), lambda g: V(g)),
        (O(3), lambda g: 2 * V(g) + T(0, 0, g), lambda g: T(2, 0, g)),
        (SO13(), lambda g: V(g), lambda g: V(g)),
        (O13(), lambda g: T(2, 0, g), lambda g: T(0, 0, g)),
        (Sp(1), lambda g: V(g) * V(g), lambda g: T(0, 0, g)),
        (direct_product(SO(3), S(3)), lambda g: V(g), lambda g: V(g)),
    ],
)
def test_every_basis_map_commutes_with_random_group_elements(group, rep_in, rep_out):
    rep_in, rep_out = rep_in(group), rep_out(group)
    basis = equivariant_basis(Hom(rep_in, rep_out))
    assert basis.dimension > 0
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        g = group.sample(generator)
        for column in basis.Q.T:
            W = column.reshape(rep_out.size, rep_in.size)
            difference = rep_out.rho(g) @ W - W @ rep_in.rho(g)
            assert difference.abs().max() <= 1e-8 * max(1.0, float(rep_in.rho(g).abs().max()))


def test_direct_product_counts():
    # SO(3) × S(3) on R^3 ⊕ R^3: maps are the scalar on the first block and DeepSets on the second
    group = direct_product(SO(3), S(3))
    assert dimension(Hom(V(group), V(group))) == 1 + 2


def test_mixing_groups_is_refused():
    with pytest.raises(ValueError, match="different groups"):
        V(SO(3)) + V(O(3))


@pytest.mark.parametrize("group_name", ["SO(3)", "O(3)"])
def test_clebsch_gordan_cross_check(group_name):
    """For every l1 ⊗ l2 → l3 (l ≤ 3, all parities) the solver's equivariant maps are exactly the
    span of e3nn's wigner_3j, path by path: dimension 1 where the selection rules allow a path
    (and parity for O(3)), 0 elsewhere."""
    group = SO(3) if group_name == "SO(3)" else O(3)
    parities = (1,) if group_name == "SO(3)" else (1, -1)
    for l1 in range(4):
        for l2 in range(4):
            for l3 in range(4):
                for p1 in parities:
                    for p2 in parities:
                        for p3 in parities:
                            rep_in = SphericalHarmonicRep(group, l1, p1) * SphericalHarmonicRep(
                                group, l2, p2
                            )
                            rep_out = SphericalHarmonicRep(group, l3, p3)
                            basis = equivariant_basis(Hom(rep_in, rep_out))
                            allowed = abs(l1 - l2) <= l3 <= l1 + l2 and (
                                group_name == "SO(3)" or p1 * p2 == p3
                            )
                            assert basis.dimension == int(allowed), (l1, l2, l3, p1, p2, p3)
                            if allowed:
                                cg = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
                                w = cg.permute(2, 0, 1).reshape(-1)
                                overlap = float((basis.Q[:, 0] @ w).abs()) / float(w.norm())
                                assert overlap == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize(
    "group,rep_in,rep_out",
    [
        (O(5), lambda g: 2 * V(g), lambda g: T(0, 0, g)),  # the O(5)-invariant regression task
        (SO(3), lambda g: 5 * T(0, 0, g) + 5 * V(g), lambda g: T(2, 0, g)),  # inertia tensor
        (O13(), lambda g: 4 * V(g), lambda g: T(0, 0, g)),  # particle scattering
        (S(4), lambda g: V(g), lambda g: V(g)),
    ],
)
def test_emlp_is_equivariant(group, rep_in, rep_out):
    from segnn.emlp.nn import EMLP

    torch.manual_seed(0)
    rep_in, rep_out = rep_in(group), rep_out(group)
    model = EMLP(rep_in, rep_out, group, channels=64, num_layers=2).double()
    x = torch.randn(8, rep_in.size, dtype=torch.float64)
    generator = torch.Generator().manual_seed(1)
    output = model(x).detach()
    assert output.abs().max() > 1e-3  # not trivially zero
    for _ in range(3):
        g = group.sample(generator, word_length=3)
        expected = output @ rep_out.rho(g).T
        actual = model(x @ rep_in.rho(g).T).detach()
        scale = float(expected.abs().max())
        assert (expected - actual).abs().max() <= 1e-9 * max(scale, 1.0) * float(
            rep_in.rho(g).abs().max()
        )


# --- the matrix-free solver ------------------------------------------------------------------


@pytest.mark.parametrize(
    "rep",
    [
        (2 * V(O13()) + T(2, 0, O13())) * T(0, 1, O13()) + V(O13()),
        Hom(T(1, 1, SO13()), T(2, 0, SO13())).dual(),
        Hom(2 * V(S(4)) + T(0, 0, S(4)), T(2, 0, S(4))),
    ],
    ids=["lorentz-sum-tensor", "lorentz-dual", "permutation-hom"],
)
def test_matrix_free_action_equals_the_formed_matrices(rep):
    generator = torch.Generator().manual_seed(1)
    v = torch.randn(rep.size, 3, dtype=torch.float64, generator=generator)
    g = rep.group.sample(generator)
    formed = rep.rho(g) @ v  # the dense path inverts whole matrices for duals: rounding ~1e-11
    assert (rep.act(g, v) - formed).abs().max() <= 1e-10 * float(formed.abs().max())
    for A in rep.group.lie:
        assert (rep.act_lie(A, v) - rep.drho(A) @ v).abs().max() <= 1e-12


@pytest.mark.parametrize(
    "rep",
    [
        Hom(T(2, 0, S(4)), T(2, 0, S(4))),
        Hom(V(Z(6)), V(Z(6))),
        T(3, 0, O(3)),
        T(4, 0, SO(3)),
        Hom(T(2, 0, SO13()), T(2, 0, SO13())),
        T(2, 0, SO(3)) + V(SO(3)) + T(2, 0, SO(3)),
    ],
    ids=["S4-T2", "Z6", "O3-T3", "SO3-T4", "SO13-T2", "sum"],
)
def test_iterative_solver_finds_the_dense_subspace(rep):
    dense = equivariant_basis(rep, method="dense")
    iterative = equivariant_basis(rep, method="iterative")
    assert iterative.method == "iterative" and iterative.dimension == dense.dimension
    # same subspace: equal orthogonal projectors
    projector = iterative.Q @ iterative.Q.T - dense.Q @ dense.Q.T
    assert projector.abs().max() <= 1e-10
    assert iterative.largest_dropped >= 1e4 * iterative.smallest_kept


def test_iterative_solver_beyond_the_dense_limit_is_exact():
    """Hom(T(4), T(4)) of SO(3): 6,561 dimensions, never formed; its invariants number the
    Riordan number R_8 = 91."""
    rep = Hom(T(4, 0, SO(3)), T(4, 0, SO(3)))
    basis = equivariant_basis(rep)  # auto: beyond DENSE_LIMIT
    assert basis.method == "iterative" and basis.dimension == 91
    assert torch.allclose(basis.Q.T @ basis.Q, torch.eye(91, dtype=torch.float64), atol=1e-12)
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        g = rep.group.sample(generator)
        assert (rep.act(g, basis.Q) - basis.Q).abs().max() <= 1e-8


def test_solver_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="dense or iterative"):
        equivariant_basis(V(SO(3)), method="lanczos")


def test_experiment_configs_are_checked(tmp_path, load_script):
    experiments = load_script("emlp_experiments")
    shipped = experiments.read_config(Path("configs/emlp_synthetic.yaml"))
    assert shipped["layers"] == 1 and set(shipped["tasks"]) == set(experiments.TASKS)
    for text, message in [
        ("chanels: 64", "unknown key 'chanels'"),
        ("layers: two", "layers .* must be an integer"),
        ("tasks: [o5, qm9]", "unknown task"),
    ]:
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(SystemExit, match=message):
            experiments.read_config(path)
    with pytest.raises(SystemExit, match="not found"):
        experiments.read_config(tmp_path / "missing.yaml")
