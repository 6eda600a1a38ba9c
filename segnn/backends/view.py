"""What a backend may read of a message-passing layer: one frozen, documented view.

A backend never touches a layer's attributes. Each :class:`~segnn.models.SEGNNLayer` publishes
a :class:`LayerView` of the parameters and conventions its messages and update are made of,
and every backend hook takes that view. The products and gates in it are ``segnn.o3`` modules,
read through their own published layouts (:class:`~segnn.o3.ConditionedTensorProduct`'s
``instructions``, ``weight_views`` and ``bias_columns``; :class:`~segnn.o3.Gate`'s
``num_scalars``, ``num_gates``, ``irreps_gated`` and activations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from e3nn import o3

from segnn.o3 import ConditionedTensorProduct, Gate
from segnn.o3.mlp import ProductFunction


class ProductStep(NamedTuple):
    """One step of a steerable MLP: a conditioned product, then its gate (``None``: linear)."""

    product: ConditionedTensorProduct
    gate: Gate | None


Messages = Callable[
    [
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor | None,
        ProductFunction | None,
    ],
    torch.Tensor,
]
Weigh = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
NodeUpdate = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, ProductFunction | None], torch.Tensor
]


@dataclass(eq=False)
class LayerView:
    """A layer as its backends see it.

    Messages ``m_ij = weigh(φ_m(h_i ⊕ h_j ⊕ s_ij ; a_ij))`` and update
    ``h_i' = node_update(Σ_j m_ij, h_i, a_i, batch)``:

    * ``message_inputs``: the irreps of the message MLP's input blocks, ``(h receiver, h sender,
      edge scalars)``, concatenated in that order;
    * ``message_steps``: the message MLP φ_m, product by product (every step gated), each
      conditioned on the edge attributes ``a_ij = attribute_scale * Y(r̂_ij)``;
    * ``attribute_scale``: ``Y^0`` of the attributes (1 for component normalisation,
      ``1/sqrt(4π)`` for integral), what the harmonics are scaled by;
    * ``irreps_hidden``: of ``h`` and of the messages;
    * ``radial_weights``: whether ``weigh`` multiplies by learnt functions of the edge scalars
      (not only the edge weights);
    * ``message(h_i, h_j, edge_attr [E, A], edge_scalars [E, S], edge_weights [E] | None,
      product)`` → ``[E, irreps_hidden.dim]``: the reference per edge, ``product`` evaluating
      each conditioned product (``None``: itself);
    * ``weigh(messages [E, (k,) D], edge_scalars [E, S], edge_weights [E] | None)``: the radial
      weights and the edge weight on finished messages (``k`` messages per edge row allowed);
    * ``node_update(aggregated [N, D], h [N, D], node_attr [N, A], batch [N], product)`` →
      ``[N, D]``: update MLP, residual, norm;
    * ``update_products``: the update MLP's products (caches to fill before compiling).

    Read-only by convention; not a frozen dataclass, because ``torch.compile`` treats frozen
    dataclass instances as constants and guards on every field (e3nn's ``Irreps`` among them).
    """

    message_inputs: tuple[o3.Irreps, o3.Irreps, o3.Irreps]
    message_steps: tuple[ProductStep, ...]
    attribute_scale: float
    irreps_hidden: o3.Irreps
    radial_weights: bool
    message: Messages
    weigh: Weigh
    node_update: NodeUpdate
    update_products: tuple[ConditionedTensorProduct, ...]
