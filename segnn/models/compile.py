"""``torch.compile`` for the message-passing layers.

Compiles the node update of every :class:`~segnn.models.SEGNNLayer` (the update MLP on the
node features and the aggregated messages, conditioned on the node attributes, the residual
and the instance norm) with one dynamic size, the number of atoms: batches of other sizes
reuse the compiled code, and all layers of a model share it (their weights are inputs of the
graph, not constants). Everything else (feature widths, the attribute scale) is a constant of
the graph: ``torch.compile(dynamic=True)`` made them all symbolic, which cost a restart of the
tracing (a Python float turned into a tensor) and generic kernels.

Why the update: its products couple every node with its own attribute (batched 3x17 and 5x17
matrices per atom), with copies and many small elementwise ops around them and in the norm,
which inductor fuses; the edge frame's message functions are mostly large matmuls and gain
little. On the QM9 model (2-core CPU, interleaved runs, docs/performance.md) compiling the
update made training steps ~7% faster (~9% with the norm; 10-12 turns); the paired messages
compiled on top of it gained 2-3% more (36 turns) for ~20 s more of warm-up. A cold compile
of the update with the norm makes the first training step take 35-44 s (C++ compilation of
inductor's kernels is most of it), so the update alone keeps the warm-up under a minute; with
the messages it went past one. The rest of the forward pass (attributes, embedding, readout)
stays eager: it holds data-dependent checks that would break the graph, and costs little.

What it cannot do: differentiate twice. Energy models trained on forces backpropagate through
``-dE/dx`` (``create_graph=True``), which compiled graphs do not support, so those run eager.
"""

from __future__ import annotations

import torch

from segnn.models.layer import SEGNNLayer
from segnn.o3 import ConditionedTensorProduct


def _rows_dynamic(function):
    """``function`` compiled with the first dimension (atoms) of its tensor arguments marked
    dynamic."""
    compiled = torch.compile(function, dynamic=False)

    def rows_dynamic(*arguments):
        for argument in arguments:
            torch._dynamo.maybe_mark_dynamic(argument, 0)
        return compiled(*arguments)

    return rows_dynamic


def compile_layers(model: torch.nn.Module) -> int:
    """Replace the ``node_update`` (update MLP, residual and instance norm) of every
    :class:`SEGNNLayer` in ``model`` by its ``torch.compile`` version (dynamic in the number of
    atoms), in place; returns the number of layers.

    Call it after moving the model to its device and dtype (a later move compiles again).
    Compilation happens on the first call (35-45 s on a 2-core CPU; cached on disk by torch for
    later runs); outputs equal the eager ones to rounding.
    """
    layers = [module for module in model.modules() if isinstance(module, SEGNNLayer)]
    for layer in layers:
        parameter = next(layer.parameters())
        for module in layer.update_mlp.modules():  # caches filled outside the compiled graph
            if isinstance(module, ConditionedTensorProduct):
                module.prepare(parameter.dtype, parameter.device)
        layer.node_update = _rows_dynamic(layer.node_update)
    return len(layers)
