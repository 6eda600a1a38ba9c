"""Steerable attributes from geometry: spherical harmonics of edges, and their node means."""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch_geometric.utils import scatter

from segnn.o3.irreps import spherical_harmonics_irreps


class SphericalHarmonicsAttributes(torch.nn.Module):
    """Edge and node attributes up to degree ``lmax``.

    * edge attribute ``a_ij = Y(r_ij / |r_ij|)`` with ``r_ij = x_j - x_i`` (``component``
      normalisation: ``Y^0 = 1`` and ``|Y^l|^2 = 2l + 1``; ``integral``: all of it divided by
      ``sqrt(4 pi)``, the official SEGNN code's choice, which scales every conditioned product
      down at initialisation);
    * node attribute ``a_i = mean_j a_ij`` over the edges that end at ``i``, with the ``l = 0``
      entry set to 1, so an isolated atom gets ``(1, 0, ..., 0)``; with edge weights ``w_ij``
      (a smooth cutoff envelope) the smooth version ``sum_j w_ij a_ij / (1 + sum_j w_ij)``,
      which changes continuously as neighbours enter or leave the cutoff.

    Irreps of both: ``1x0e + 1x1o + ... + 1x(lmax)``.
    """

    def __init__(self, lmax: int, normalization: str = "component"):
        super().__init__()
        if normalization not in ("component", "integral"):
            raise ValueError(
                f"normalization must be 'component' or 'integral', got {normalization!r}"
            )
        self.lmax = lmax
        self.normalization = normalization
        # Y^0 of the chosen normalisation: 1, or 1 / sqrt(4 pi) (unit integral over the sphere)
        self.constant = 1.0 if normalization == "component" else (4 * math.pi) ** -0.5
        self.irreps = spherical_harmonics_irreps(lmax)
        self.degrees = list(range(lmax + 1))

    def edge_attributes(self, edge_vectors: torch.Tensor) -> torch.Tensor:
        """``[E, 3]`` edge vectors → ``[E, irreps.dim]`` harmonics of their directions."""
        return o3.spherical_harmonics(
            self.degrees, edge_vectors, normalize=True, normalization=self.normalization
        )

    def node_attributes(
        self,
        edge_attributes: torch.Tensor,
        edge_target: torch.Tensor,
        num_nodes: int,
        edge_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean of the incident edges' harmonics, ``[num_nodes, irreps.dim]``, ``l = 0`` set to 1.

        ``edge_weights [E]``, if given, turn the mean into the smooth weighted average above.
        """
        if edge_weights is None:
            node_attributes = scatter(
                edge_attributes, edge_target, dim=0, dim_size=num_nodes, reduce="mean"
            )
        else:
            weighted = scatter(
                edge_attributes * edge_weights.unsqueeze(-1),
                edge_target,
                dim=0,
                dim_size=num_nodes,
                reduce="sum",
            )
            total = scatter(edge_weights, edge_target, dim=0, dim_size=num_nodes, reduce="sum")
            node_attributes = weighted / (1.0 + total).unsqueeze(-1)
        constant = torch.full_like(node_attributes[:, :1], self.constant)
        return torch.cat([constant, node_attributes[:, 1:]], dim=1)
