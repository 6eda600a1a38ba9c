"""Equivariant MLPs for any matrix group (EMLP): linear layers ``W = Q β``, gated nonlinearities.

A representation that is a direct sum is split into its parts; the maps between a part of type
``a`` and a part of type ``b`` are spanned by one solved basis ``Q_ab`` of ``Hom(a, b)``, shared
by every copy, so the solver only ever sees the small ``Hom`` of two parts, never the whole
``Hom(rep_in, rep_out)`` (the decomposition of Finzi et al. into independent sub-problems).
"""

from __future__ import annotations

import torch

from segnn.emlp.groups import Group
from segnn.emlp.reps import Hom, Rep, SumRep, T, TensorRep, Trivial, Vector
from segnn.emlp.solve import DENSE_LIMIT, equivariant_basis


def _parts(rep: Rep) -> list[Rep]:
    return list(rep.reps) if isinstance(rep, SumRep) else [rep]


def _copies(rep: Rep) -> dict[Rep, torch.Tensor]:
    """``{part type: [copies, part.size] indices into rep's vector}`` in order of appearance."""
    indices: dict[Rep, list[torch.Tensor]] = {}
    offset = 0
    for part in _parts(rep):
        indices.setdefault(part, []).append(torch.arange(offset, offset + part.size))
        offset += part.size
    return {part: torch.stack(rows) for part, rows in indices.items()}


class EquivariantLinear(torch.nn.Module):
    """``y = W x + b`` with ``W`` in the span of the equivariant maps ``rep_in → rep_out`` and ``b``
    an invariant vector of ``rep_out``.

    Shapes: ``x [B, rep_in.size]`` → ``[B, rep_out.size]``. Parameters: for every pair of part
    types ``(b, a)`` a tensor ``[copies_b, copies_a, dim Hom(a, b)]``; for every output part type
    with invariants ``[copies_b, dim invariants]``.
    """

    def __init__(self, rep_in: Rep, rep_out: Rep):
        super().__init__()
        if rep_in.group != rep_out.group:
            raise ValueError(
                f"rep_in and rep_out act on different groups: {rep_in.group}, {rep_out.group}"
            )
        self.rep_in, self.rep_out = rep_in, rep_out
        self.inputs, self.outputs = _copies(rep_in), _copies(rep_out)
        self.pairs, self.weights = [], torch.nn.ParameterList()
        for b_index, (part_out, out_rows) in enumerate(self.outputs.items()):
            for a_index, (part_in, in_rows) in enumerate(self.inputs.items()):
                Q = equivariant_basis(Hom(part_in, part_out)).Q
                if Q.shape[1] == 0:
                    continue
                self.register_buffer(
                    f"basis_{len(self.pairs)}",
                    Q.reshape(part_out.size, part_in.size, -1),
                    persistent=False,
                )
                self.pairs.append((b_index, a_index))
                std = (Q.shape[1] * len(in_rows) * part_in.size / part_out.size) ** -0.5
                self.weights.append(
                    torch.nn.Parameter(torch.randn(len(out_rows), len(in_rows), Q.shape[1]) * std)
                )
        self.bias_parts, self.biases = [], torch.nn.ParameterList()
        for b_index, (part_out, out_rows) in enumerate(self.outputs.items()):
            Q = equivariant_basis(part_out).Q
            if Q.shape[1]:
                self.register_buffer(f"bias_basis_{len(self.bias_parts)}", Q, persistent=False)
                self.bias_parts.append(b_index)
                self.biases.append(torch.nn.Parameter(torch.zeros(len(out_rows), Q.shape[1])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.rep_in.size:
            raise ValueError(
                f"expected inputs of size {self.rep_in.size} ({self.rep_in!r}), got {x.shape[-1]}"
            )
        out_rows = list(self.outputs.values())
        in_rows = list(self.inputs.values())
        blocks = [x.new_zeros(x.shape[0], *rows.shape) for rows in out_rows]
        for index, ((b, a), beta) in enumerate(zip(self.pairs, self.weights)):
            Q = getattr(self, f"basis_{index}").to(x.dtype)
            W = torch.einsum("oik,uvk->uvoi", Q, beta.to(x.dtype))
            blocks[b] = blocks[b] + torch.einsum("uvoi,nvi->nuo", W, x[:, in_rows[a]])
        for index, (b, beta) in enumerate(zip(self.bias_parts, self.biases)):
            Q = getattr(self, f"bias_basis_{index}").to(x.dtype)
            blocks[b] = blocks[b] + torch.einsum("ok,uk->uo", Q, beta.to(x.dtype))
        y = x.new_zeros(x.shape[0], self.rep_out.size)
        for rows, block in zip(out_rows, blocks):
            y[:, rows.reshape(-1)] = block.reshape(x.shape[0], -1)
        return y

    def extra_repr(self) -> str:
        return f"{self.rep_in!r} → {self.rep_out!r}"


def tensor_rank(rep: Rep) -> int:
    """``r`` for a part ``T(r, 0)`` (trivial, vector, or tensor products of vectors)."""
    if isinstance(rep, Trivial):
        return 0
    if isinstance(rep, Vector):
        return 1
    if isinstance(rep, TensorRep):
        return tensor_rank(rep.first) + tensor_rank(rep.second)
    raise ValueError(f"the bilinear layer needs parts T(r, 0), got {rep!r}")


def invariant_form(group: Group) -> torch.Tensor:
    """``G [d, d]`` with ``ρ(g)ᵀ G ρ(g) = G``: the identity for groups of orthogonal matrices,
    else the group's unique invariant bilinear form (the Minkowski metric, the symplectic form)."""
    generators = list(group.discrete) + [torch.matrix_exp(A) for A in group.lie]
    identity = torch.eye(group.d, dtype=torch.float64)
    if all(torch.allclose(g.T @ g, identity, atol=1e-12) for g in generators):
        return identity
    basis = equivariant_basis(T(0, 2, group)).Q
    if basis.shape[1] != 1:
        raise ValueError(f"{group} has {basis.shape[1]} invariant bilinear forms; need exactly one")
    form = basis[:, 0].reshape(group.d, group.d)
    return form / form.abs().max()


class Bilinear(torch.nn.Module):
    """EMLP's cheap bilinear layer on a sum of parts ``T(r, 0)``: a part of rank ``r_o + r_i``
    of the input, read as a matrix ``[d^r_o, d^r_i]`` with its last ``r_i`` indices lowered by
    the invariant form ``G``, is an equivariant map ``T(r_i) → T(r_o)``; it is applied to the
    input's parts of rank ``r_i``, mixed over copies by learned weights. Products of vectors
    give scalars (``r_o = 0``), tensors act on vectors, and so on.

    Shapes: ``[B, rep.size]`` → ``[B, rep.size]``.
    """

    def __init__(self, rep: Rep, scale: float = 0.1):
        super().__init__()
        group = rep.group
        self.rep, self.scale, self.d = rep, scale, group.d
        ranks: dict[int, list[torch.Tensor]] = {}
        offset = 0
        for part in _parts(rep):
            ranks.setdefault(tensor_rank(part), []).append(torch.arange(offset, offset + part.size))
            offset += part.size
        self.rows = {rank: torch.stack(rows) for rank, rows in ranks.items()}
        form = invariant_form(group)
        self.blocks, self.weights = [], torch.nn.ParameterList()
        for rank_out in self.rows:
            for rank_in in self.rows:
                if rank_out + rank_in not in self.rows or rank_out + rank_in == 0:
                    continue
                lowering = torch.ones(1, 1, dtype=torch.float64)
                for _ in range(rank_in):
                    lowering = torch.kron(lowering, form)
                self.register_buffer(f"lowering_{len(self.blocks)}", lowering, persistent=False)
                self.blocks.append((rank_out, rank_in))
                shape = (
                    len(self.rows[rank_out]),
                    len(self.rows[rank_out + rank_in]),
                    len(self.rows[rank_in]),
                )
                self.weights.append(
                    torch.nn.Parameter(torch.randn(shape) / (shape[1] * shape[2]) ** 0.5)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        y = torch.zeros_like(x)
        for index, ((rank_out, rank_in), beta) in enumerate(zip(self.blocks, self.weights)):
            lowering = getattr(self, f"lowering_{index}").to(x.dtype)
            matrices = x[:, self.rows[rank_out + rank_in]].reshape(
                batch, -1, self.d**rank_out, self.d**rank_in
            )
            inputs = x[:, self.rows[rank_in]] @ lowering.T  # [B, copies_in, d^r_in], lowered
            products = torch.einsum("bwoj,bij->bwio", matrices, inputs)
            out_rows = self.rows[rank_out]
            y[:, out_rows.reshape(-1)] += torch.einsum(
                "uwi,bwio->buo", beta.to(x.dtype), products
            ).reshape(batch, -1)
        return self.scale * y


def gated(rep: Rep) -> Rep:
    """``rep`` plus one gate scalar per non-scalar part (the input of :class:`GatedNonlinearity`)."""
    nonscalar = sum(not isinstance(part, Trivial) for part in _parts(rep))
    return rep + nonscalar * Trivial(rep.group) if nonscalar else rep


class GatedNonlinearity(torch.nn.Module):
    """``gated(rep) → rep``: SiLU on scalar parts, ``sigmoid(gate) * v`` on every other part ``v``
    with its own gate scalar (appended after ``rep``), which keeps equivariance for any group."""

    def __init__(self, rep: Rep):
        super().__init__()
        scalars, gated_rows, gate_index = [], [], []
        offset, gate = 0, rep.size
        for part in _parts(rep):
            rows = list(range(offset, offset + part.size))
            if isinstance(part, Trivial):
                scalars += rows
            else:
                gated_rows += rows
                gate_index += [gate] * part.size
                gate += 1
            offset += part.size
        self.rep = rep
        self.register_buffer("scalars", torch.tensor(scalars, dtype=torch.long), persistent=False)
        self.register_buffer(
            "gated_rows", torch.tensor(gated_rows, dtype=torch.long), persistent=False
        )
        self.register_buffer(
            "gate_index", torch.tensor(gate_index, dtype=torch.long), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x[:, : self.rep.size].clone()
        y[:, self.scalars] = torch.nn.functional.silu(x[:, self.scalars])
        y[:, self.gated_rows] = torch.sigmoid(x[:, self.gate_index]) * x[:, self.gated_rows]
        return y


def uniform_rep(channels: int, group: Group, max_rank: int | None = None) -> Rep:
    """About ``channels`` dimensions spread evenly over tensor ranks ``T(0), T(1), ..., T(R)``:
    each rank gets ``channels / (R + 1)`` dimensions (at least one copy). ``R`` is the highest rank
    whose ``Hom(T(R), T(R))`` the dense solver handles and that fits ``d^R (R + 1) <= channels``
    (or ``max_rank``)."""
    d = group.d
    rank = 0
    while d ** (2 * (rank + 1)) <= DENSE_LIMIT and d ** (rank + 1) * (rank + 2) <= channels:
        rank += 1
    if max_rank is not None:
        rank = min(rank, max_rank)
    rep = None
    for r in range(rank + 1):
        copies = max(1, channels // ((rank + 1) * d**r))
        part = copies * T(r, 0, group)
        rep = part if rep is None else rep + part
    return rep


class EMLPBlock(torch.nn.Module):
    """``x → gate(h + bilinear(h))`` with ``h = linear(x)`` in ``gated(rep_out)``: the EMLP layer."""

    def __init__(self, rep_in: Rep, rep_out: Rep):
        super().__init__()
        self.linear = EquivariantLinear(rep_in, gated(rep_out))
        self.bilinear = Bilinear(gated(rep_out))
        self.nonlinearity = GatedNonlinearity(rep_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        return self.nonlinearity(h + self.bilinear(h))


class EMLP(torch.nn.Module):
    """``num_layers`` :class:`EMLPBlock` (linear, bilinear, gated nonlinearity) on the hidden
    representation ``uniform_rep(channels, group)``, then a linear map to ``rep_out``.

    Shapes: ``[B, rep_in.size]`` → ``[B, rep_out.size]``; equivariant: ``f(ρ_in(g) x) =
    ρ_out(g) f(x)`` for every ``g`` in ``group``.
    """

    def __init__(
        self, rep_in: Rep, rep_out: Rep, group: Group, channels: int = 384, num_layers: int = 3
    ):
        super().__init__()
        hidden = uniform_rep(channels, group)
        blocks, previous = [], rep_in
        for _ in range(num_layers):
            blocks.append(EMLPBlock(previous, hidden))
            previous = hidden
        layers = blocks
        layers.append(EquivariantLinear(previous, rep_out))
        self.network = torch.nn.Sequential(*layers)
        self.rep_in, self.rep_out, self.hidden = rep_in, rep_out, hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)
