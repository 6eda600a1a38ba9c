"""Group representations built from the defining one: duals, direct sums, tensor products.

A :class:`Rep` of a :class:`~segnn.emlp.groups.Group` maps a group element ``g`` (its ``d x d``
defining matrix) to ``ρ(g)`` and a Lie-algebra element ``A`` to ``dρ(A)``:

* ``V``: ``ρ(g) = g``, ``dρ(A) = A``; the trivial rep: ``1`` and ``0``;
* dual ``V*``: ``ρ(g^{-1})ᵀ`` and ``-dρ(A)ᵀ``;
* direct sum ``ρ_1 ⊕ ρ_2``: block diagonal; ``3 * V`` is ``V ⊕ V ⊕ V``;
* tensor product ``ρ_1 ⊗ ρ_2``: ``ρ_1(g) ⊗ ρ_2(g)`` (Kronecker product) and
  ``dρ_1(A) ⊗ I + I ⊗ dρ_2(A)`` (Kronecker sum);
* ``T(p, q) = V^{⊗p} ⊗ V*^{⊗q}``, and linear maps ``V_in → V_out`` as ``V_out ⊗ V_in*``.

Notation: ``V(G) + V(G)``, ``3 * T(1, 0, G)``, ``V(G) * V(G)`` or ``V(G) ** 2``, ``V(G).dual()``,
``Hom(rep_in, rep_out)``. Reps of different groups do not mix (``ValueError``).
"""

from __future__ import annotations

import torch

from segnn.emlp.groups import Group


class Rep:
    """A finite-dimensional representation of ``group``; subclasses define ``rho`` and ``drho``."""

    group: Group
    size: int

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        """``[size, size]`` matrix of the group element with defining matrix ``g [d, d]``."""
        raise NotImplementedError

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        """``[size, size]`` matrix of the Lie-algebra element ``A [d, d]``."""
        raise NotImplementedError

    def act(self, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``ρ(g) v`` for ``v [size, m]``; sums and tensor products apply it factor by factor
        without forming ``ρ(g)`` (the matrix-free solver relies on this)."""
        return self.rho(g) @ v

    def act_lie(self, A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``dρ(A) v`` for ``v [size, m]``, matrix-free like :meth:`act`."""
        return self.drho(A) @ v

    def dual(self) -> Rep:
        return DualRep(self)

    def __add__(self, other: Rep) -> Rep:
        return SumRep([self, other])

    def __mul__(self, other: Rep | int) -> Rep:
        if isinstance(other, int):
            return self.__rmul__(other)
        return TensorRep(self, other)

    def __rmul__(self, copies: int) -> Rep:
        if not isinstance(copies, int) or copies < 1:
            raise ValueError(f"a multiplicity must be a positive integer, got {copies!r}")
        return SumRep([self] * copies) if copies > 1 else self

    def __pow__(self, power: int) -> Rep:
        if power == 0:
            return Trivial(self.group)
        rep = self
        for _ in range(power - 1):
            rep = TensorRep(rep, self)
        return rep

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rep) and self.group == other.group and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash((repr(self), self.group))


def _same_group(reps: list[Rep]) -> Group:
    group = reps[0].group
    for rep in reps[1:]:
        if rep.group != group:
            raise ValueError(
                f"cannot combine representations of different groups: {group} and {rep.group}"
            )
    return group


class Vector(Rep):
    """The defining representation ``V`` of ``group``."""

    def __init__(self, group: Group):
        self.group, self.size = group, group.d

    def rho(self, g):
        return g

    def drho(self, A):
        return A

    def __repr__(self) -> str:
        return "V"


class Trivial(Rep):
    """The one-dimensional trivial representation (scalars), ``T(0)``."""

    def __init__(self, group: Group):
        self.group, self.size = group, 1

    def rho(self, g):
        return torch.ones(1, 1, dtype=g.dtype)

    def drho(self, A):
        return torch.zeros(1, 1, dtype=A.dtype)

    def __repr__(self) -> str:
        return "1"


class DualRep(Rep):
    def __init__(self, rep: Rep):
        self.rep, self.group, self.size = rep, rep.group, rep.size

    def rho(self, g):
        return torch.linalg.inv(self.rep.rho(g)).T.contiguous()

    def drho(self, A):
        return -self.rep.drho(A).T.contiguous()

    def dual(self) -> Rep:
        return self.rep

    def _distributed(self) -> Rep | None:
        """``(A ⊗ B)* = A* ⊗ B*`` and ``(A ⊕ B)* = A* ⊕ B*``, for matrix-free action."""
        if isinstance(self.rep, TensorRep):
            return TensorRep(self.rep.first.dual(), self.rep.second.dual())
        if isinstance(self.rep, SumRep):
            return SumRep([rep.dual() for rep in self.rep.reps])
        return None

    def act(self, g, v):
        distributed = self._distributed()
        return super().act(g, v) if distributed is None else distributed.act(g, v)

    def act_lie(self, A, v):
        distributed = self._distributed()
        return super().act_lie(A, v) if distributed is None else distributed.act_lie(A, v)

    def __repr__(self) -> str:
        return f"{self.rep!r}*" if isinstance(self.rep, (Vector, Trivial)) else f"({self.rep!r})*"


class SumRep(Rep):
    def __init__(self, reps: list[Rep]):
        flat = [part for rep in reps for part in (rep.reps if isinstance(rep, SumRep) else [rep])]
        self.group = _same_group(flat)
        self.reps = flat
        self.size = sum(rep.size for rep in flat)

    def rho(self, g):
        return torch.block_diag(*(rep.rho(g) for rep in self.reps))

    def drho(self, A):
        return torch.block_diag(*(rep.drho(A) for rep in self.reps))

    def act(self, g, v):
        parts = v.split([rep.size for rep in self.reps])
        return torch.cat([rep.act(g, part) for rep, part in zip(self.reps, parts)])

    def act_lie(self, A, v):
        parts = v.split([rep.size for rep in self.reps])
        return torch.cat([rep.act_lie(A, part) for rep, part in zip(self.reps, parts)])

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for rep in self.reps:
            counts[repr(rep)] = counts.get(repr(rep), 0) + 1
        return " + ".join(f"{n}*{name}" if n > 1 else name for name, n in counts.items())


class TensorRep(Rep):
    def __init__(self, first: Rep, second: Rep):
        self.group = _same_group([first, second])
        self.first, self.second = first, second
        self.size = first.size * second.size

    def rho(self, g):
        return torch.kron(self.first.rho(g), self.second.rho(g))

    def drho(self, A):
        eye_first = torch.eye(self.first.size, dtype=A.dtype)
        eye_second = torch.eye(self.second.size, dtype=A.dtype)
        return torch.kron(self.first.drho(A), eye_second) + torch.kron(
            eye_first, self.second.drho(A)
        )

    def _on_first(self, function, v: torch.Tensor) -> torch.Tensor:
        """Apply ``function`` (acting on ``[first.size, m']``) to the first factor of ``v``."""
        m = v.shape[1]
        return function(v.reshape(self.first.size, self.second.size * m)).reshape(self.size, m)

    def _on_second(self, function, v: torch.Tensor) -> torch.Tensor:
        a, b, m = self.first.size, self.second.size, v.shape[1]
        x = v.reshape(a, b, m).transpose(0, 1).reshape(b, a * m)
        return function(x).reshape(b, a, m).transpose(0, 1).reshape(self.size, m)

    def act(self, g, v):
        v = self._on_first(lambda x: self.first.act(g, x), v)
        return self._on_second(lambda x: self.second.act(g, x), v)

    def act_lie(self, A, v):
        return self._on_first(lambda x: self.first.act_lie(A, x), v) + self._on_second(
            lambda x: self.second.act_lie(A, x), v
        )

    def __repr__(self) -> str:
        def wrap(rep: Rep) -> str:
            return f"({rep!r})" if isinstance(rep, SumRep) else repr(rep)

        return f"{wrap(self.first)}⊗{wrap(self.second)}"


class SphericalHarmonicRep(Rep):
    """Degree-``l`` real spherical harmonics of SO(3) or O(3) (e3nn's basis and Wigner D), parity
    ``p`` under the inversion; for the cross-check of the Clebsch-Gordan coefficients."""

    def __init__(self, group: Group, l: int, parity: int = 1):
        from e3nn import o3

        if group.d != 3:
            raise ValueError(f"spherical harmonics need SO(3) or O(3), got {group}")
        self.group, self.l, self.parity, self.size = group, l, parity, 2 * l + 1
        self.irrep = o3.Irrep(l, parity)
        with _float64_default():
            self.generators = o3.so3_generators(l)  # rotations about x, y, z

    def rho(self, g):
        with _float64_default():
            return self.irrep.D_from_matrix(g)

    def drho(self, A):
        # A = c_x L_x + c_y L_y + c_z L_z with (L_k)_{ij} = -ε_kij
        coefficients = torch.stack([A[2, 1], A[0, 2], A[1, 0]])
        return torch.einsum("k,kij->ij", coefficients, self.generators)

    def __repr__(self) -> str:
        return f"Y{self.l}{'e' if self.parity == 1 else 'o'}"


class _float64_default:
    """e3nn builds its matrices in torch's default dtype: make that float64 for exact bases."""

    def __enter__(self):
        self.previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.previous)


def V(group: Group) -> Rep:
    return Vector(group)


def T(p: int, q: int = 0, group: Group | None = None) -> Rep:
    """``V^{⊗p} ⊗ V*^{⊗q}`` of ``group`` (``T(0)`` is the trivial rep)."""
    if group is None:
        raise ValueError("T(p, q, group) needs the group")
    if p == q == 0:
        return Trivial(group)
    vector = Vector(group)
    parts = [vector] * p + [DualRep(vector)] * q
    rep = parts[0]
    for part in parts[1:]:
        rep = TensorRep(rep, part)
    return rep


def Hom(rep_in: Rep, rep_out: Rep) -> Rep:
    """Linear maps ``rep_in → rep_out`` as the representation ``rep_out ⊗ rep_in*`` (a map ``W``
    ``[out, in]`` flattened row-major)."""
    return TensorRep(rep_out, rep_in.dual())
