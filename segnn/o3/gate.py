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
    ``[..., irreps_out.dim]`` with ``irreps_out = scalars + gated``. Published for backends:
    ``num_scalars``, ``num_gates`` (one per field of ``irreps_gated``, in order),
    :meth:`scalar_activation`, :meth:`gate_activation`.
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
        self.irreps_gated = gated

    def scalar_activation(self, x: torch.Tensor) -> torch.Tensor:
        """SiLU of the scalars (scaled when ``normalize``)."""
        y = torch.nn.functional.silu(x)
        return y * self.scalar_gain if self.normalize else y

    def gate_activation(self, x: torch.Tensor) -> torch.Tensor:
        """Sigmoid of the gates (scaled when ``normalize``)."""
        y = torch.sigmoid(x)
        return y * self.gate_gain if self.normalize else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # split, not sliced: a slice's backward writes into a zero-filled copy of all of x
        scalars, gates, gated = x.split(
            [self.num_scalars, self.num_gates, x.shape[-1] - self.num_scalars - self.num_gates],
            dim=-1,
        )
        activated = self.scalar_activation(scalars)
        if self.num_gates == 0:
            return activated
        gate_values = self.gate_activation(gates).index_select(-1, self.gate_of_component)
        return torch.cat([activated, gated * gate_values], dim=-1)
