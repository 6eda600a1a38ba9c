"""Steerable MLPs: stacks of attribute-conditioned tensor products with gated nonlinearities."""

from __future__ import annotations

from collections.abc import Callable

import torch
from e3nn import o3

from segnn.o3.gate import Gate
from segnn.o3.tensor_product import ConditionedTensorProduct, Parameterization

ProductFunction = Callable[[ConditionedTensorProduct, torch.Tensor, torch.Tensor], torch.Tensor]
"""How to evaluate one product, ``(product, x, attr) -> y``: a backend's hook
(:mod:`segnn.backends`); ``None`` calls the product itself."""


class GatedTensorProduct(torch.nn.Module):
    """A conditioned tensor product followed by a :class:`Gate`.

    The product maps ``irreps_in ⊗ irreps_attr`` to ``scalars + gates + gated`` (one extra ``0e``
    gate per ``l > 0`` output field); the gate returns ``irreps_out`` (sorted and simplified).

    Shapes: ``x [N, irreps_in.dim]``, ``attr [N, irreps_attr.dim]`` → ``[N, irreps_out.dim]``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_attr: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        parameterization: Parameterization = "normalized",
        normalize_activations: bool = False,
    ):
        super().__init__()
        self.gate = Gate(irreps_out, normalize_activations)
        self.tensor_product = ConditionedTensorProduct(
            irreps_in, irreps_attr, self.gate.irreps_in, parameterization
        )
        self.irreps_in = self.tensor_product.irreps_in
        self.irreps_attr = self.tensor_product.irreps_attr
        self.irreps_out = self.gate.irreps_out

    def forward(
        self, x: torch.Tensor, attr: torch.Tensor, product: ProductFunction | None = None
    ) -> torch.Tensor:
        if product is None:
            return self.gate(self.tensor_product(x, attr))
        return self.gate(product(self.tensor_product, x, attr))


class SteerableMLP(torch.nn.Module):
    """``num_layers`` conditioned tensor products, all but the last gated.

    ``irreps_in → irreps_hidden → ... → irreps_out``, every layer conditioned on the same
    attribute ``attr``. With ``gate_output=True`` the last layer is gated too (as in SEGNN's
    message function). ``parameterization``: of every product's weights
    (:mod:`segnn.o3.tensor_product`); ``normalize_activations``: of the gates
    (:class:`segnn.o3.gate.Gate`).

    Shapes: ``x [N, irreps_in.dim]``, ``attr [N, irreps_attr.dim]`` → ``[N, irreps_out.dim]``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_hidden: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_attr: o3.Irreps | str,
        num_layers: int = 2,
        gate_output: bool = False,
        parameterization: Parameterization = "normalized",
        normalize_activations: bool = False,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(
                f"a steerable MLP needs at least one layer, got num_layers={num_layers}"
            )
        layers = []
        irreps = o3.Irreps(irreps_in)
        for index in range(num_layers):
            last = index == num_layers - 1
            target = irreps_out if last else irreps_hidden
            if last and not gate_output:
                layer = ConditionedTensorProduct(irreps, irreps_attr, target, parameterization)
            else:
                layer = GatedTensorProduct(
                    irreps, irreps_attr, target, parameterization, normalize_activations
                )
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = torch.nn.ModuleList(layers)
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_attr = o3.Irreps(irreps_attr)
        self.irreps_out = irreps

    def forward(
        self, x: torch.Tensor, attr: torch.Tensor, product: ProductFunction | None = None
    ) -> torch.Tensor:
        """``product``: how each tensor product is evaluated (a backend's hook), or ``None``."""
        for layer in self.layers:
            if product is None:
                x = layer(x, attr)
            elif isinstance(layer, ConditionedTensorProduct):
                x = product(layer, x, attr)
            else:
                x = layer(x, attr, product)
        return x
