"""The equivariant subspace of a representation: the null space of its generator constraints.

A vector ``v`` of a representation ``ρ`` is invariant (for ``ρ = Hom(in, out)``: an
equivariant map) exactly when ``dρ(A_i) v = 0`` for the Lie-algebra basis and
``(ρ(h_k) - I) v = 0`` for the discrete generators. Stacking those constraints into one matrix
``C``, the invariant subspace is its null space, read off a dense SVD: the right singular vectors
whose singular values fall below ``tolerance * σ_max``. The rank decision is reported
(:class:`EquivariantBasis`) and refused when no clear gap separates zero from non-zero singular
values.

Large representations use a matrix-free method instead (``method="iterative"``, the default
beyond :data:`DENSE_LIMIT`): constraints are applied factor by factor through the Kronecker
structure of tensor representations (:meth:`Rep.act`, :meth:`Rep.act_lie`), never formed.
Random vectors are projected onto the null space, ``X - C⁺C X``, by conjugate gradients on the
normal equations (``Cᵀ`` from autograd, since ``C`` is linear), and the rank of the projected
block is read off its singular values; the block grows until it has more columns than the
null space has dimensions. A direct sum splits into independent problems, one per distinct
summand (the invariant subspace of ``A ⊕ B`` is that of ``A`` plus that of ``B``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from segnn.emlp.reps import Rep, SumRep

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
    method: str = "dense"

    @property
    def dimension(self) -> int:
        return self.Q.shape[1]


_CACHE: dict[tuple[Rep, str], EquivariantBasis] = {}


def clear_cache() -> None:
    """Forget every solved basis (for timing solves from scratch)."""
    _CACHE.clear()


def constraint_matrix(rep: Rep) -> torch.Tensor:
    """``[(M + K) * size, size]``: the stacked ``dρ(A_i)`` and ``ρ(h_k) - I``, formed by
    applying :func:`constraint_operator` to the identity."""
    return constraint_operator(rep)(torch.eye(rep.size, dtype=torch.float64))


def equivariant_basis(
    rep: Rep, tolerance: float = 1e-9, min_gap: float = 1e4, method: str = "auto"
) -> EquivariantBasis:
    """The invariant subspace of ``rep`` (cached per representation and method).

    ``method``: ``"dense"`` (SVD of the formed constraints), ``"iterative"`` (matrix-free) or
    ``"auto"`` (dense up to :data:`DENSE_LIMIT` dimensions). Singular values
    ``<= tolerance * σ_max`` count as zero; :class:`AmbiguousRankError` is raised when the
    smallest non-zero one is not at least ``min_gap`` times the largest zero one.
    """
    if method not in ("auto", "dense", "iterative"):
        raise ValueError(f"method must be auto, dense or iterative, got {method!r}")
    if method == "auto":
        if rep.size > DENSE_LIMIT:
            return equivariant_basis(rep, tolerance, min_gap, "iterative")
        try:
            return equivariant_basis(rep, tolerance, min_gap, "dense")
        except torch.linalg.LinAlgError:  # LAPACK's SVD gave up (many repeated values)
            return equivariant_basis(rep, tolerance, min_gap, "iterative")
    if (rep, method) in _CACHE:
        return _CACHE[rep, method]
    if isinstance(rep, SumRep):
        basis = _sum_basis(rep, tolerance, min_gap, method)
    elif method == "dense":
        if rep.size > DENSE_LIMIT:
            raise ValueError(
                f"{rep!r} has dimension {rep.size}; the dense solver stops at {DENSE_LIMIT} "
                "(use method='iterative')"
            )
        basis = _dense_basis(rep, tolerance, min_gap)
    else:
        basis = _iterative_basis(rep, tolerance, min_gap)
    _CACHE[rep, method] = basis
    return basis


def _sum_basis(rep: SumRep, tolerance: float, min_gap: float, method: str) -> EquivariantBasis:
    """Block-diagonal assembly of the summands' bases (each distinct summand solved once)."""
    parts = [equivariant_basis(part, tolerance, min_gap, method) for part in rep.reps]
    Q = torch.block_diag(*(part.Q for part in parts))
    kept = max(part.smallest_kept for part in parts)
    dropped = min(part.largest_dropped for part in parts)
    return EquivariantBasis(rep, Q, kept, dropped, method)


def constraint_operator(rep: Rep) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v [size, m] → C v [(M + K) * size, m]``: the constraints ``dρ(A_i) v`` for the
    Lie-algebra basis and ``ρ(h_k) v - v`` for the discrete generators, applied without forming
    ``C`` (:meth:`Rep.act_lie`, :meth:`Rep.act`)."""
    group = rep.group

    def apply(v: torch.Tensor) -> torch.Tensor:
        blocks = [rep.act_lie(A, v) for A in group.lie]
        blocks += [rep.act(h, v) - v for h in group.discrete]
        return torch.cat(blocks) if blocks else v.new_zeros(0, v.shape[1])

    return apply


def _conjugate_gradient(
    operator: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    tolerance: float = 1e-14,
    max_iterations: int = 2000,
) -> torch.Tensor:
    """Solve ``operator(x) = b`` column by column (``operator`` symmetric positive
    semi-definite, ``b`` in its range) by conjugate gradients; ``x`` stays in the range."""
    x = torch.zeros_like(b)
    residual = b.clone()
    direction = residual.clone()
    norm = (residual * residual).sum(0)
    target = tolerance**2 * norm
    for _ in range(max_iterations):
        if bool((norm <= target).all()):
            break
        image = operator(direction)
        curvature = (direction * image).sum(0)
        step = torch.where(curvature > 0, norm / curvature.clamp_min(1e-300), 0.0)
        x = x + step * direction
        residual = residual - step * image
        new_norm = (residual * residual).sum(0)
        direction = residual + torch.where(norm > 0, new_norm / norm.clamp_min(1e-300), 0.0) * (
            direction
        )
        norm = new_norm
    return x


def _iterative_basis(
    rep: Rep, tolerance: float, min_gap: float, oversample: int = 16, seed: int = 0
) -> EquivariantBasis:
    """Matrix-free null space: project random blocks onto it, grow the block until its rank
    (the null space's dimension) is at most ``columns - oversample``."""
    constraints = constraint_operator(rep)
    generator = torch.Generator().manual_seed(seed)
    columns = min(rep.size, 2 * oversample)
    while True:
        block = torch.randn(rep.size, columns, generator=generator, dtype=torch.float64)
        # C is linear: its transpose is the vector-Jacobian product at any point
        _, transpose = torch.func.vjp(constraints, torch.zeros_like(block))

        def normal(v: torch.Tensor, transpose=transpose) -> torch.Tensor:  # CᵀC v
            return transpose(constraints(v))[0]

        scale = float(torch.linalg.matrix_norm(block, ord=2))
        projected = block - _conjugate_gradient(normal, normal(block))
        left, singular, _ = torch.linalg.svd(projected, full_matrices=False)
        relative = singular / scale
        nonzero = relative > tolerance
        rank = int(nonzero.sum())
        if rank <= columns - oversample or columns == rep.size:
            break
        columns = min(rep.size, 2 * columns)
    signal = float(relative[rank - 1]) if rank else float("inf")
    noise = float(relative[rank]) if rank < len(relative) else 0.0
    if rank and noise > 0 and signal < min_gap * noise:
        raise AmbiguousRankError(
            f"{rep!r}: no clear gap in the projected spectrum (smallest kept {signal:.2e}, "
            f"largest dropped {noise:.2e})"
        )
    # same reading as the dense solver: "kept" = the largest value treated as zero
    return EquivariantBasis(rep, left[:, :rank].contiguous(), noise, signal, "iterative")


def _dense_basis(rep: Rep, tolerance: float, min_gap: float) -> EquivariantBasis:
    """Null space of the formed constraint matrix from its SVD."""
    constraints = constraint_matrix(rep)
    if constraints.shape[0] == 0:
        return EquivariantBasis(rep, torch.eye(rep.size, dtype=torch.float64), 0.0, float("inf"))
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
    return basis
