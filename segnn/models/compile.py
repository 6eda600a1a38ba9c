"""``torch.compile`` for the message-passing layers.

Compiles the message function of every :class:`~segnn.models.SEGNNLayer` with dynamic shapes:
batches with other numbers of atoms and edges reuse the compiled code, and all layers of a model
share it (their weights are inputs of the graph, not constants). The messages are where fusing
pays: many copies and elementwise ops around the edge frame on the largest tensors (one row per
edge). The node updates stay eager: compiling them too doubled the cold compilation on a 2-core
CPU (81 vs 43 s) for ~5% more training throughput (docs/performance.md). The rest of the forward
pass (attributes, embedding, readout) stays eager as well: it holds data-dependent checks that
would break the graph, and costs little.

What it cannot do: differentiate twice. Energy models trained on forces backpropagate through
``-dE/dx`` (``create_graph=True``), which compiled graphs do not support, so those run eager.
"""

from __future__ import annotations

import torch

from segnn.models.layer import SEGNNLayer
from segnn.o3 import ConditionedTensorProduct


def compile_layers(model: torch.nn.Module) -> int:
    """Replace the ``message`` of every :class:`SEGNNLayer` in ``model`` by its
    ``torch.compile(dynamic=True)`` version, in place; returns the number of layers.

    Call it after moving the model to its device and dtype (a later move compiles again).
    Compilation happens on the first call (~45 s on a 2-core CPU; cached on disk by torch for
    later runs); outputs equal the eager ones to rounding.
    """
    layers = [module for module in model.modules() if isinstance(module, SEGNNLayer)]
    for layer in layers:
        parameter = next(layer.parameters())
        for module in layer.message_mlp.modules():  # caches filled outside the compiled graph
            if isinstance(module, ConditionedTensorProduct):
                module.prepare(parameter.dtype, parameter.device, frame=True)
        layer.message = torch.compile(layer.message, dynamic=True)
    return len(layers)
