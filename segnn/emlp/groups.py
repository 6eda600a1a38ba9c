"""Matrix groups given by generators (Finzi, Welling, Wilson, ICML 2021).

A group ``G ⊂ GL(d)`` is described by its discrete generators ``h_k`` (``[K, d, d]``) and a basis
``A_i`` of its Lie algebra (``[M, d, d]``): every element is a product of ``exp(Σ c_i A_i)`` and
words in the ``h_k``. That is all the equivariance solver needs: a map is equivariant under ``G``
exactly when it commutes with ``dρ(A_i)`` and ``ρ(h_k)`` for every generator.
"""

from __future__ import annotations

import itertools

import torch


class Group:
    """A matrix group of ``d x d`` matrices from generators (float64).

    ``discrete [K, d, d]``: discrete generators; ``lie [M, d, d]``: a basis of the Lie algebra.
    """

    def __init__(
        self,
        name: str,
        dimension: int,
        discrete: torch.Tensor | None = None,
        lie: torch.Tensor | None = None,
    ):
        empty = torch.zeros(0, dimension, dimension, dtype=torch.float64)
        self.name = name
        self.d = dimension
        self.discrete = empty if discrete is None else discrete.to(torch.float64)
        self.lie = empty if lie is None else lie.to(torch.float64)
        for what, generators in (("discrete", self.discrete), ("Lie algebra", self.lie)):
            if generators.shape[1:] != (dimension, dimension):
                raise ValueError(
                    f"{name}: {what} generators must be [K, {dimension}, {dimension}], "
                    f"got {list(generators.shape)}"
                )

    def sample(
        self, generator: torch.Generator | None = None, word_length: int = 6
    ) -> torch.Tensor:
        """A random element ``exp(Σ c_i A_i) h_{k_1} ... h_{k_L}`` with normal ``c`` and a random
        word of discrete generators, ``[d, d]``."""
        g = torch.eye(self.d, dtype=torch.float64)
        if len(self.lie):
            coefficients = torch.randn(len(self.lie), dtype=torch.float64, generator=generator)
            g = torch.matrix_exp(torch.einsum("m,mij->ij", coefficients, self.lie))
        if len(self.discrete):
            for index in torch.randint(len(self.discrete), (word_length,), generator=generator):
                g = g @ self.discrete[index]
        return g

    def __mul__(self, other: Group) -> Group:
        return direct_product(self, other)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Group)
            and self.d == other.d
            and self.discrete.shape == other.discrete.shape
            and self.lie.shape == other.lie.shape
            and torch.equal(self.discrete, other.discrete)
            and torch.equal(self.lie, other.lie)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.d))

    def __repr__(self) -> str:
        return self.name


def _unit(d: int, i: int, j: int) -> torch.Tensor:
    matrix = torch.zeros(d, d, dtype=torch.float64)
    matrix[i, j] = 1.0
    return matrix


def _stack(matrices: list[torch.Tensor], d: int) -> torch.Tensor:
    return torch.stack(matrices) if matrices else torch.zeros(0, d, d, dtype=torch.float64)


def SO(n: int) -> Group:
    """Rotations of ``R^n``: Lie algebra of antisymmetric matrices ``E_ij - E_ji`` (i < j)."""
    lie = [_unit(n, i, j) - _unit(n, j, i) for i, j in itertools.combinations(range(n), 2)]
    return Group(f"SO({n})", n, lie=_stack(lie, n))


def O(n: int) -> Group:  # noqa: E743 (the group's name)
    """Rotations and reflections of ``R^n``: SO(n) plus the reflection ``diag(-1, 1, ..., 1)``."""
    reflection = torch.eye(n, dtype=torch.float64)
    reflection[0, 0] = -1.0
    return Group(f"O({n})", n, discrete=reflection[None], lie=SO(n).lie)


_MINKOWSKI = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64))


def SO13() -> Group:
    """The proper orthochronous Lorentz group on ``(t, x, y, z)`` with metric ``diag(-1, 1, 1, 1)``:
    three rotations and three boosts, all ``A`` with ``Aᵀ η + η A = 0``."""
    rotations = [_unit(4, i, j) - _unit(4, j, i) for i, j in itertools.combinations(range(1, 4), 2)]
    boosts = [_unit(4, 0, i) + _unit(4, i, 0) for i in range(1, 4)]
    return Group("SO(1,3)", 4, lie=torch.stack(rotations + boosts))


def O13() -> Group:
    """The full Lorentz group: SO(1,3) plus parity ``diag(1, -1, -1, -1)`` and time reversal
    ``diag(-1, 1, 1, 1)``."""
    parity = torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))
    return Group("O(1,3)", 4, discrete=torch.stack([parity, _MINKOWSKI]), lie=SO13().lie)


def Sp(n: int) -> Group:
    """The symplectic group of ``R^{2n}``: ``A = J S`` for symmetric ``S`` with
    ``J = [[0, I], [-I, 0]]``, so that ``Aᵀ J + J A = 0``."""
    d = 2 * n
    J = torch.zeros(d, d, dtype=torch.float64)
    J[:n, n:] = torch.eye(n, dtype=torch.float64)
    J[n:, :n] = -torch.eye(n, dtype=torch.float64)
    symmetric = [
        _unit(d, i, j) + _unit(d, j, i) if i != j else _unit(d, i, i)
        for i, j in itertools.combinations_with_replacement(range(d), 2)
    ]
    return Group(f"Sp({n})", d, lie=torch.stack([J @ S for S in symmetric]))


def _permutation_matrix(permutation: list[int]) -> torch.Tensor:
    n = len(permutation)
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix[torch.tensor(permutation), torch.arange(n)] = 1.0  # e_i -> e_{permutation[i]}
    return matrix


def S(n: int) -> Group:
    """The symmetric group permuting the axes of ``R^n``: a transposition and an ``n``-cycle."""
    if n < 2:
        return Group(f"S({n})", n)
    transposition = [1, 0, *range(2, n)]
    cycle = [(i + 1) % n for i in range(n)]
    discrete = torch.stack([_permutation_matrix(transposition), _permutation_matrix(cycle)])
    return Group(f"S({n})", n, discrete=discrete)


def Z(n: int) -> Group:
    """The cyclic group shifting the axes of ``R^n``."""
    return Group(f"Z({n})", n, discrete=_permutation_matrix([(i + 1) % n for i in range(n)])[None])


def D(n: int) -> Group:
    """The dihedral group of the regular ``n``-gon acting on its vertices: a rotation ``i → i + 1``
    and a reflection ``i → -i`` (mod ``n``)."""
    rotation = _permutation_matrix([(i + 1) % n for i in range(n)])
    reflection = _permutation_matrix([(-i) % n for i in range(n)])
    return Group(f"D({n})", n, discrete=torch.stack([rotation, reflection]))


def direct_product(first: Group, second: Group) -> Group:
    """``G × H`` acting block-diagonally on ``R^{d_G} ⊕ R^{d_H}``."""
    d = first.d + second.d

    def embed(matrices: torch.Tensor, offset: int, size: int, identity: bool) -> list[torch.Tensor]:
        out = []
        for matrix in matrices:
            full = (
                torch.eye(d, dtype=torch.float64)
                if identity
                else torch.zeros(d, d, dtype=torch.float64)
            )
            full[offset : offset + size, offset : offset + size] = matrix
            out.append(full)
        return out

    discrete = embed(first.discrete, 0, first.d, True) + embed(
        second.discrete, first.d, second.d, True
    )
    lie = embed(first.lie, 0, first.d, False) + embed(second.lie, first.d, second.d, False)
    return Group(f"{first.name}×{second.name}", d, _stack(discrete, d), _stack(lie, d))
