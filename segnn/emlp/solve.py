"""The equivariant subspace of a representation: the null space of its generator constraints.

A vector ``v`` of a representation ``ρ`` is invariant (for ``ρ = Hom(in, out)``: an
equivariant map) exactly when ``dρ(A_i) v = 0`` for the Lie-algebra basis and
``(ρ(h_k) - I) v = 0`` for the discrete generators. Stacking those constraints into one matrix
``C``, the invariant subspace is its null space, read off a dense SVD: the right singular vectors
whose singular values fall below ``tolerance * σ_max``. The rank decision is reported
(:class:`EquivariantBasis`) and refused when no clear gap separates zero from non-zero singular
values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from segnn.emlp.reps import Rep

DENSE_LIMIT = 4096  # dense SVD of a [constraints * size, size] matrix; beyond this it is slow


class AmbiguousRankError(ArithmeticError):
    """The singular values of the constraints show no clear gap: the basis is not trustworthy."""


@dataclass(frozen=True)
class EquivariantBasis:
    """``Q [rep.size, k]`` orthonormal columns spanning the invariant subspace of ``rep``.

    ``smallest_kept`` is the largest singular value counted as zero, ``largest_dropped`` the
    smallest one counted as non-zero (relative to the largest); their ratio is the gap behind
    the rank decision.
    """

    rep: Rep
    Q: torch.Tensor
    smallest_kept: float
    largest_dropped: float

    @property
    def dimension(self) -> int:
        return self.Q.shape[1]


_CACHE: dict[Rep, EquivariantBasis] = {}


def constraint_matrix(rep: Rep) -> torch.Tensor:
    """``[(M + K) * size, size]``: the stacked ``dρ(A_i)`` and ``ρ(h_k) - I``."""
    group = rep.group
    blocks = [rep.drho(A) for A in group.lie]
    identity = torch.eye(rep.size, dtype=torch.float64)
    blocks += [rep.rho(h) - identity for h in group.discrete]
    if not blocks:
        return torch.zeros(0, rep.size, dtype=torch.float64)
    return torch.cat(blocks)


def equivariant_basis(rep: Rep, tolerance: float = 1e-9, min_gap: float = 1e4) -> EquivariantBasis:
    """The invariant subspace of ``rep`` (cached per representation).

    Singular values ``<= tolerance * σ_max`` count as zero; :class:`AmbiguousRankError` is raised
    when the smallest non-zero one is not at least ``min_gap`` times the largest zero one.
    """
    if rep in _CACHE:
        return _CACHE[rep]
    if rep.size > DENSE_LIMIT:
        raise ValueError(
            f"{rep!r} has dimension {rep.size}; the dense solver stops at {DENSE_LIMIT}"
        )
    constraints = constraint_matrix(rep)
    if constraints.shape[0] == 0:
        basis = EquivariantBasis(rep, torch.eye(rep.size, dtype=torch.float64), 0.0, float("inf"))
        _CACHE[rep] = basis
        return basis
    # at least `size` rows (every generator contributes a square block). C = Q_c R with
    # orthonormal Q_c: R has C's singular values and right singular vectors, and its square SVD
    # converges where LAPACK's tall SVD can fail on many repeated singular values
    triangular = torch.linalg.qr(constraints, mode="r").R
    _, singular, right = torch.linalg.svd(triangular)
    largest = float(singular[0]) if len(singular) else 0.0
    if largest == 0.0:
        Q = torch.eye(rep.size, dtype=torch.float64)
        basis = EquivariantBasis(rep, Q, 0.0, float("inf"))
    else:
        relative = singular / largest
        zero = relative <= tolerance
        kept = float(relative[zero].max()) if bool(zero.any()) else 0.0
        dropped = float(relative[~zero].min()) if bool((~zero).any()) else float("inf")
        if dropped < min_gap * max(kept, 1e-300) and kept > 0:
            raise AmbiguousRankError(
                f"{rep!r}: no clear gap in the constraint spectrum (largest zero {kept:.2e}, "
                f"smallest non-zero {dropped:.2e} relative to {largest:.2e})"
            )
        Q = right[zero].T.contiguous()
        basis = EquivariantBasis(rep, Q, kept, dropped)
    _CACHE[rep] = basis
    return basis
