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

from segnn.backends.base import EDGE_CHUNK, Backend, Capabilities
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
        group_of = {(g.block_in, g.block_out): k for k, g in enumerate(product.groups)}
        paths_seen: dict[int, int] = {}
        # per e3nn instruction, in e3nn's order: (group index, first path, attribute copies,
        # gain); one of our paths per copy of the attribute block, e3nn's 'uvw' weight spans
        # them all. e3nn scales by 1/sqrt(fan_in), as the normalised parameterisation does;
        # standard weights are used as they are, so they reach e3nn times sqrt(fan_in)
        self.pieces = []
        for instruction in self.e3nn.instructions:
            group = group_of[(instruction.i_in1, instruction.i_out)]
            copies = product.irreps_attr[instruction.i_in2].mul
            fan_in = product.fan_in[product.output_type[instruction.i_out]]
            gain = fan_in**0.5 if product.parameterization == "standard" else 1.0
            self.pieces.append((group, paths_seen.get(group, 0), copies, gain))
            paths_seen[group] = paths_seen.get(group, 0) + copies

    def flat_weight(self) -> torch.Tensor:
        product = self.product()
        pieces = []
        for group_index, path, copies, gain in self.pieces:
            group = product.groups[group_index]
            weight = product.weights[group_index].reshape(
                group.mul_in, group.num_paths, group.mul_out
            )
            pieces.append(weight[:, path : path + copies, :].reshape(-1) * gain)  # (u, v, w)
        return torch.cat(pieces)

    def forward(self, x: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        product = self.product()
        y = self.e3nn.to(dtype=x.dtype, device=x.device)(x, attr, self.flat_weight().to(x.dtype))
        if product.bias.numel() == 0:
            return y
        bias = product.bias.new_zeros(product.out_dim).index_copy(
            0, product.scalar_index, product.bias
        )
        return y + bias


class E3nnBackend(Backend):
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
