"""A layer's message MLP evaluated in the edge frame, on features stored by ``|m|``.

Built once per layer from its :class:`~segnn.backends.view.LayerView`: the frame layouts of the
message input and output, each product's :class:`~segnn.backends.edge_frame.plan.FramePlan`,
each gate's fields per ``|m|``, and the :class:`~segnn.backends.edge_frame.pairs.PairMirror` of
the first product (both directions of an edge pair in one matmul).
"""

from __future__ import annotations

import torch

from segnn.backends.edge_frame.frames import FrameConcat, FrameLayout
from segnn.backends.edge_frame.pairs import PairMirror
from segnn.backends.edge_frame.plan import FramePlan
from segnn.backends.view import LayerView
from segnn.o3 import ConditionedTensorProduct, Gate


def frame_gate_fields(gate: Gate) -> list[torch.Tensor | None]:
    """Per ``|m| = k >= 1``: the gates of the gated channels of degree ``>= k``, in the order
    part ``k`` holds them (``None``: all gates, in order)."""
    gated = gate.irreps_gated
    first_gate = [sum(mul for mul, _ in gated[:index]) for index in range(len(gated))]
    fields = []
    for k in range(1, (gated.lmax if len(gated) else 0) + 1):
        index = [
            first + channel
            for first, (mul, ir) in zip(first_gate, gated)
            if ir.l >= k
            for channel in range(mul)
        ]
        fields.append(None if index == list(range(gate.num_gates)) else torch.tensor(index))
    return fields


def frame_product(
    product: ConditionedTensorProduct,
    plan: FramePlan,
    parts: list[torch.Tensor],
    attribute_scale: float = 1.0,
    mirror: PairMirror | None = None,
) -> list[torch.Tensor]:
    """``product`` in the edge frame, the attribute being ``attribute_scale * Y(ŷ)``:
    ``irreps_in`` features by ``|m|`` (``[rows, K_0]``, ``[2, rows, K_k]``) → the ``irreps_out``
    features by ``|m|``, one matmul per ``|m|``. With ``mirror`` the rows are edge pairs and the
    result has ``2 * rows`` rows: both directions of each pair, interleaved."""
    flat = product.flat_weights()
    if attribute_scale != 1.0:  # the product is linear in the attribute
        flat = flat * attribute_scale
    weights = plan.effective_weights(flat)
    if mirror is not None:
        weights = mirror(weights)
    rows = parts[0].shape[0]
    out = []
    for k, weight in enumerate(weights):
        if k < len(parts) and weight.shape[-2] > 0:
            out.append(parts[k] @ weight)
        else:
            shape = (rows, weight.shape[-1]) if k == 0 else (2, rows, weight.shape[-1])
            out.append(parts[0].new_zeros(shape))
    if mirror is not None:  # [rows, 2 N] is [2 rows, N], the directions interleaved
        out = [part.view(*part.shape[:-2], 2 * rows, part.shape[-1] // 2) for part in out]
    if product.bias.numel():
        bias_columns = plan.tensors(product.bias.dtype, product.bias.device)[3]
        bias = product.bias.new_zeros(out[0].shape[-1]).index_copy(0, bias_columns, product.bias)
        out[0] = out[0] + bias
    return out


def frame_gate(
    gate: Gate, fields: list[torch.Tensor | None], parts: list[torch.Tensor]
) -> list[torch.Tensor]:
    """``gate`` on features by ``|m|``: part 0 is ``[scalars | gates | m = 0 of the gated]``,
    part ``k`` ``[2, rows, K_k]``; ``fields`` from :func:`frame_gate_fields` (on the device)."""
    scalars, gates, gated = parts[0].split(
        [gate.num_scalars, gate.num_gates, parts[0].shape[-1] - gate.num_scalars - gate.num_gates],
        dim=-1,
    )
    activated = gate.scalar_activation(scalars)
    if gate.num_gates == 0:
        return [activated]
    gate_values = gate.gate_activation(gates)
    out = [torch.cat([activated, gated * gate_values], dim=-1)]
    for part, index in zip(parts[1:], fields):
        out.append(part * (gate_values if index is None else gate_values.index_select(-1, index)))
    return out


class FrameMLP:
    """A layer's message MLP in the edge frame (module docstring).

    ``concat``: the message input ``[h receiver, h sender, edge scalars]`` straight into the
    frame; ``layout``: the messages' frame layout; ``mirror``: the first product's pair weights.
    """

    def __init__(self, layer: LayerView):
        # the steps, not the view: a backend's cache keyed weakly by the view holds this
        self.steps = layer.message_steps
        self.attribute_scale = layer.attribute_scale
        self.concat = FrameConcat(layer.message_inputs)
        self.layout = FrameLayout(layer.irreps_hidden)
        self.mirror = PairMirror(self.concat, swap=(0, 1))
        self.plans = [FramePlan(step.product) for step in layer.message_steps]
        self.gate_fields = [
            None if step.gate is None else frame_gate_fields(step.gate)
            for step in layer.message_steps
        ]
        self._fields: dict = {}

    def prepare(self, dtype: torch.dtype, device: torch.device) -> None:
        """Move the plans' and gates' index tensors to ``device`` now (not while tracing)."""
        for plan in self.plans:
            plan.tensors(dtype, device)
        self.mirror.tensors(dtype, device)
        self._device_fields(device)

    def _device_fields(self, device: torch.device) -> list:
        if device not in self._fields:
            self._fields[device] = [
                None if fields is None else [None if f is None else f.to(device) for f in fields]
                for fields in self.gate_fields
            ]
        return self._fields[device]

    def __call__(self, parts: list[torch.Tensor], paired: bool) -> list[torch.Tensor]:
        """The message MLP on frame parts; ``paired``: the rows are edge pairs, the result
        both directions of each, interleaved."""
        mirror = self.mirror if paired else None
        fields = self._device_fields(parts[0].device)
        for step, plan, gate_fields in zip(self.steps, self.plans, fields):
            parts = frame_product(step.product, plan, parts, self.attribute_scale, mirror)
            if step.gate is not None:
                parts = frame_gate(step.gate, gate_fields, parts)
            mirror = None  # the first product doubles the rows
        return parts
