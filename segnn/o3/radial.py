"""Smooth radial features of interatomic distances: Bessel basis and cutoff envelope."""

from __future__ import annotations

import math

import torch
from e3nn import o3


class PolynomialEnvelope(torch.nn.Module):
    """Smooth cutoff ``u(r)`` that is 1 at ``r = 0`` and vanishes at ``r = cutoff`` together with
    its first and second derivatives (Klicpera et al., DimeNet, ICLR 2020):

    ``u(d) = 1 - (p+1)(p+2)/2 d^p + p(p+2) d^(p+1) - p(p+1)/2 d^(p+2)``, ``d = r / cutoff``,
    and ``u = 0`` for ``d >= 1``.

    Shapes: ``[...]`` distances (Å) → ``[...]`` weights.
    """

    def __init__(self, cutoff: float, exponent: int = 6):
        super().__init__()
        if cutoff <= 0 or exponent < 2:
            raise ValueError(f"need cutoff > 0 and exponent >= 2, got {cutoff}, {exponent}")
        self.cutoff, self.exponent = float(cutoff), int(exponent)

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        p = self.exponent
        d = distances / self.cutoff
        envelope = (
            1.0
            - (p + 1) * (p + 2) / 2 * d.pow(p)
            + p * (p + 2) * d.pow(p + 1)
            - p * (p + 1) / 2 * d.pow(p + 2)
        )
        return torch.where(d < 1.0, envelope, torch.zeros_like(envelope))

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, exponent={self.exponent}"


class BesselBasis(torch.nn.Module):
    """Radial Bessel functions ``b_n(r) = sqrt(2 / c) sin(n π r / c) / r`` for ``n = 1..num_basis``
    (the zeroth-order spherical Bessel functions that vanish at the cutoff ``c``).

    Shapes: ``[E]`` distances (Å, > 0) → ``[E, num_basis]``.
    """

    def __init__(self, cutoff: float, num_basis: int = 8):
        super().__init__()
        if cutoff <= 0 or num_basis < 1:
            raise ValueError(f"need cutoff > 0 and num_basis >= 1, got {cutoff}, {num_basis}")
        self.cutoff, self.num_basis = float(cutoff), int(num_basis)
        frequencies = torch.arange(1, num_basis + 1, dtype=torch.float64) * math.pi / cutoff
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        r = distances.unsqueeze(-1)
        frequencies = self.frequencies.to(distances.dtype)
        return math.sqrt(2.0 / self.cutoff) * torch.sin(frequencies * r) / r

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, num_basis={self.num_basis}"


class SmoothRadialFeatures(torch.nn.Module):
    """Invariant edge features and message weights that make a model smooth at the cutoff.

    ``forward(distances [E]) -> (features [E, num_basis], weights [E])`` with
    ``features = u(r) b(r)`` and ``weights = u(r)``: messages are multiplied by ``u(r)``, so an
    atom entering or leaving the cutoff sphere changes the energy continuously, and forces too
    (``u`` vanishes with zero first and second derivatives).
    """

    def __init__(self, cutoff: float, num_basis: int = 8, envelope_exponent: int = 6):
        super().__init__()
        self.basis = BesselBasis(cutoff, num_basis)
        self.envelope = PolynomialEnvelope(cutoff, envelope_exponent)

    def forward(self, distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.envelope(distances)
        return self.basis(distances) * weights.unsqueeze(-1), weights


class RadialChannelWeights(torch.nn.Module):
    """A learnt function of the radial features that scales every channel of a steerable feature.

    ``forward(radial [E, num_radial]) -> [E, irreps.dim]``: an MLP (``num_radial → hidden →
    number of channels``, SiLU) whose output for a channel is repeated over that channel's
    ``2l + 1`` components. Multiplying a message by it is equivariant (each channel is scaled by
    an invariant) and lets the message depend on the distance multiplicatively, as the radial
    networks of NequIP/MACE-style models do, rather than only through SEGNN's scalar inputs.
    """

    def __init__(self, num_radial: int, irreps: o3.Irreps | str, hidden: int = 64):
        super().__init__()
        irreps = o3.Irreps(irreps)
        component_counts = torch.tensor([ir.dim for mul, ir in irreps for _ in range(mul)])
        channel_of_component = torch.repeat_interleave(
            torch.arange(irreps.num_irreps), component_counts
        )
        self.register_buffer("channel_of_component", channel_of_component, persistent=False)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(num_radial, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, irreps.num_irreps),
        )
        self.irreps = irreps

    def forward(self, radial: torch.Tensor) -> torch.Tensor:
        return self.mlp(radial)[:, self.channel_of_component]
