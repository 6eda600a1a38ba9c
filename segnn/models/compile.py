"""``torch.compile`` for the message-passing layers.

Compiles the message functions of every :class:`~segnn.models.SEGNNLayer` with one dynamic
size, the number of edges (or of edge pairs, :mod:`segnn.o3.edge_pairs`): batches with other
numbers of atoms and edges reuse the compiled code, and all layers of a model share it (their weights are inputs of the graph, not
constants). Everything else (feature widths, the rotations' sizes, the attribute scale) is a
constant of the graph: ``torch.compile(dynamic=True)`` made them all symbolic, which cost a
restart of the tracing (a Python float turned into a tensor) and generic kernels. The messages
are where fusing pays: many copies and elementwise ops around the edge frame on the largest
tensors (one row per edge). The node updates stay eager: compiling them too doubled the cold
compilation on a 2-core CPU (81 vs 43 s) for ~5% more training throughput
(docs/performance.md). The rest of the forward pass (attributes, embedding, readout) stays
eager as well: it holds data-dependent checks that would break the graph, and costs little.

What it cannot do: differentiate twice. Energy models trained on forces backpropagate through
``-dE/dx`` (``create_graph=True``), which compiled graphs do not support, so those run eager.
"""

from __future__ import annotations

import torch

from segnn.models.layer import SEGNNLayer
from segnn.o3 import ConditionedTensorProduct


def _rows_dynamic(function):
    """``function`` compiled with the first dimension (edges, or edge pairs) of its tensor
    arguments, lists of tensors included, marked dynamic."""
    compiled = torch.compile(function, dynamic=False)

    def rows_dynamic(*arguments, **keywords):
        for argument in (*arguments, *keywords.values()):
            for tensor in argument if isinstance(argument, (list, tuple)) else (argument,):
                if isinstance(tensor, torch.Tensor):
                    torch._dynamo.maybe_mark_dynamic(tensor, 0)
        return compiled(*arguments, **keywords)

    return rows_dynamic


def compile_layers(model: torch.nn.Module) -> int:
    """Replace the ``message`` and ``paired_message`` of every :class:`SEGNNLayer` in
    ``model`` by their ``torch.compile`` versions (dynamic in the number of edges or edge
    pairs), in place; returns the number of layers.

    Call it after moving the model to its device and dtype (a later move compiles again).
    Compilation happens on the first call (~40 s on a 2-core CPU; cached on disk by torch for
    later runs); outputs equal the eager ones to rounding.
    """
    layers = [module for module in model.modules() if isinstance(module, SEGNNLayer)]
    for layer in layers:
        parameter = next(layer.parameters())
        for module in layer.message_mlp.modules():  # caches filled outside the compiled graph
            if isinstance(module, ConditionedTensorProduct):
                module.prepare(parameter.dtype, parameter.device, frame=True)
        layer.message = _rows_dynamic(layer.message)
        layer.paired_message = _rows_dynamic(layer.paired_message)
    return len(layers)
