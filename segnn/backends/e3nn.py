"""The ``e3nn`` backend, the reference: every product is e3nn's ``FullyConnectedTensorProduct``.

Each :class:`~segnn.o3.ConditionedTensorProduct` is evaluated by e3nn's own product (its own
kernels) on the *same* parameters, messages per edge: what every other backend is compared
with (``tests/test_backends.py``) and what speed-ups are measured against
(``scripts/benchmark.py``).
"""

from __future__ import annotations

import weakref

import torch
from e3nn import o3

from segnn.backends.base import EDGE_CHUNK, Capabilities
from segnn.backends.plain import PlainBackend
from segnn.o3.mlp import ProductFunction
from segnn.o3.tensor_product import ConditionedTensorProduct


class ReferenceTensorProduct(torch.nn.Module):
    """e3nn's fully connected product with external weights gathered from a
    :class:`ConditionedTensorProduct`'s parameters (no copy: gradients reach them).

    Shapes as :class:`ConditionedTensorProduct`: ``x [N, in]``, ``a [N, attr]`` → ``[N, out]``.
    """

    def __init__(self, product: ConditionedTensorProduct):
        super().__init__()
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # e3nn builds its coefficients in the default dtype
        try:
            self.e3nn = o3.FullyConnectedTensorProduct(
                product.irreps_in,
                product.irreps_attr,
                product.irreps_out,
                internal_weights=False,
                shared_weights=True,
            )
        finally:
            torch.set_default_dtype(previous)
        # a weak reference, not a submodule: the parameters stay the product's own, and the
        # backend's cache (keyed weakly by the product) lets both go with the model
        self.product = weakref.ref(product)
        # per e3nn instruction, in e3nn's order: our paths through the same blocks (one per
        # copy of the attribute irrep; e3nn's 'uvw' weight spans them all) and the gain that
        # turns e3nn's path weight into ours
        ours: dict[tuple[int, int, int], list[int]] = {}
        for index, path in enumerate(product.instructions):
            ours.setdefault((path.input, path.attribute, path.output), []).append(index)
        self.pieces = []
        for instruction in self.e3nn.instructions:
            paths = ours[(instruction.i_in1, instruction.i_in2, instruction.i_out)]
            gain = product.instructions[paths[0]].path_weight / instruction.path_weight
            self.pieces.append((paths, gain))

    def flat_weight(self) -> torch.Tensor:
        """The product's weights in e3nn's flat layout, ``[mul_in, copies, mul_out]`` per
        instruction, times the gains."""
        views = self.product().weight_views()
        return torch.cat(
            [
                torch.stack([views[path] for path in paths], dim=1).reshape(-1) * gain
                for paths, gain in self.pieces
            ]
        )

    def forward(self, x: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        product = self.product()
        y = self.e3nn.to(dtype=x.dtype, device=x.device)(x, attr, self.flat_weight().to(x.dtype))
        if product.bias.numel() == 0:
            return y
        return y.index_add(1, product.bias_columns, product.bias.expand(len(x), -1))


class E3nnBackend(PlainBackend):
    __doc__ = __doc__
    name = "e3nn"
    capabilities = Capabilities(compile=False, fullgraph=False)

    def __init__(self, compile: bool = False, edge_chunk: int | None = EDGE_CHUNK):
        super().__init__(compile, edge_chunk)
        self.products: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def product_function(self) -> ProductFunction:
        return self.evaluate

    def evaluate(
        self, product: ConditionedTensorProduct, x: torch.Tensor, attr: torch.Tensor
    ) -> torch.Tensor:
        """``product(x, attr)`` computed by e3nn, built on first use."""
        reference = self.products.get(product)
        if reference is None:
            reference = self.products[product] = ReferenceTensorProduct(product)
        return reference(x, attr)
