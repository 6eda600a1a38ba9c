"""Gated nonlinearity for steerable features.

Scalars (``0e``) pass through SiLU. Every field of degree ``l > 0`` is multiplied by the sigmoid
of its own extra ``0e`` gate scalar. Both operations commute with rotations and reflections:
a pointwise nonlinearity applied to the components of an ``l > 0`` field would not.

With ``normalize=True`` both activations are scaled to unit second moment for a unit-normal
input, ``E[f(z)^2] = 1`` (SiLU by ~1.68, sigmoid by ~1.85), as e3nn's ``Gate`` does and with it
the official SEGNN code: signals keep their scale through deep stacks of gated products.
"""

from __future__ import annotations

import numpy as np
import torch
from e3nn import o3


def second_moment_gain(function) -> float:
    """``1 / sqrt(E[f(z)^2])`` for ``z ~ N(0, 1)``, by 100-point Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(100)
    values = function(torch.from_numpy(nodes)).numpy()
    return float((weights @ values**2 / weights.sum()) ** -0.5)


def gate_irreps(irreps_out: o3.Irreps | str) -> tuple[o3.Irreps, o3.Irreps]:
    """Split ``irreps_out`` into the pre-activation irreps a :class:`Gate` needs.

    Returns ``(irreps_pre_gate, irreps_gated)``: ``irreps_pre_gate`` is
    ``scalars + gates + gated`` with one ``0e`` gate per ``l > 0`` field, in that order.
    """
    irreps_out = o3.Irreps(irreps_out).sort().irreps.simplify()
    for _, ir in irreps_out:
        if ir.l == 0 and ir.p != 1:
            raise ValueError(f"gate supports even scalars only; got {ir} in {irreps_out}")
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
    gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
    return scalars + gates + gated, gated


class Gate(torch.nn.Module):
    """``[scalars | gates | gated] → [SiLU(scalars) | sigmoid(gates) * gated]``.

    Input ``[..., irreps_pre_gate.dim]`` (see :func:`gate_irreps`), output
    ``[..., irreps_out.dim]`` with ``irreps_out = scalars + gated``.
    """

    def __init__(self, irreps_out: o3.Irreps | str, normalize: bool = False):
        super().__init__()
        self.normalize = normalize
        self.scalar_gain = second_moment_gain(torch.nn.functional.silu) if normalize else 1.0
        self.gate_gain = second_moment_gain(torch.sigmoid) if normalize else 1.0
        self.irreps_in, gated = gate_irreps(irreps_out)
        self.num_scalars = sum(mul for mul, ir in self.irreps_in if ir.l == 0) - gated.num_irreps
        self.num_gates = gated.num_irreps
        self.irreps_out = o3.Irreps(f"{self.num_scalars}x0e") + gated if self.num_scalars else gated
        # For every component of the gated block, the index of the gate that scales it.
        field_of_component = [
            field
            for field, ir in enumerate(ir for mul, ir in gated for _ in range(mul))
            for _ in range(ir.dim)
        ]
        self.register_buffer(
            "gate_of_component",
            torch.tensor(field_of_component, dtype=torch.long),
            persistent=False,
        )
        # In the edge frame (segnn.o3.edge_frame), part k >= 1 holds the gated blocks of degree
        # >= k channel by channel: the gates of those blocks, in order.
        first_gate = [sum(mul for mul, _ in gated[:index]) for index in range(len(gated))]
        self._frame_gates = []
        for k in range(1, (gated.lmax if len(gated) else 0) + 1):
            index = [
                first + channel
                for first, (mul, ir) in zip(first_gate, gated)
                if ir.l >= k
                for channel in range(mul)
            ]
            everything = index == list(range(self.num_gates))
            name = f"frame_gates_{k}"
            self.register_buffer(name, torch.tensor(index, dtype=torch.long), persistent=False)
            self._frame_gates.append(None if everything else name)

    def _silu(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.silu(x)
        return y * self.scalar_gain if self.normalize else y

    def _sigmoid(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(x)
        return y * self.gate_gain if self.normalize else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # split, not sliced: a slice's backward writes into a zero-filled copy of all of x
        scalars, gates, gated = x.split(
            [self.num_scalars, self.num_gates, x.shape[-1] - self.num_scalars - self.num_gates],
            dim=-1,
        )
        activated = self._silu(scalars)
        if self.num_gates == 0:
            return activated
        gate_values = self._sigmoid(gates).index_select(-1, self.gate_of_component)
        return torch.cat([activated, gated * gate_values], dim=-1)

    def forward_frame(self, parts: list[torch.Tensor]) -> list[torch.Tensor]:
        """The gate on features stored by ``|m|`` (:mod:`segnn.o3.edge_frame`): part 0 is
        ``[scalars | gates | m = 0 of the gated]``, part ``k`` ``[2, rows, K_k]``."""
        scalars, gates, gated = parts[0].split(
            [
                self.num_scalars,
                self.num_gates,
                parts[0].shape[-1] - self.num_scalars - self.num_gates,
            ],
            dim=-1,
        )
        activated = self._silu(scalars)
        if self.num_gates == 0:
            return [activated]
        gate_values = self._sigmoid(gates)
        out = [torch.cat([activated, gated * gate_values], dim=-1)]
        for part, name in zip(parts[1:], self._frame_gates):
            gates_k = (
                gate_values if name is None else gate_values.index_select(-1, getattr(self, name))
            )
            out.append(part * gates_k)
        return out
