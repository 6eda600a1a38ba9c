"""The seam every backend implements, and the plain backend: segnn's own products, per edge.

A backend decides *how* a :class:`~segnn.models.SEGNN` computes, never *what*: every backend
evaluates the same function of the same parameters (``tests/test_backends.py`` holds them to
the ``e3nn`` reference). The model calls it at four points:

* :meth:`Backend.frames` — once per batch, after the geometry: add what the messages need
  (edge frames, edge pairs, sorted receivers) to the :class:`~segnn.backends.geometry.Geometry`;
* :meth:`Backend.convolve` — per layer: gather both ends of every edge, the message MLP
  (:meth:`Backend.messages`), the sum over each atom's incoming messages →
  ``[N, irreps_hidden.dim]``. Large graphs are computed ``edge_chunk`` edges at a time, and in
  evaluation with gradients (forces of a large system) each part's messages are recomputed in
  the backward pass instead of stored: memory grows with the atoms, not with edges × features;
* :meth:`Backend.update` — per layer: the node update (update MLP, residual, norm), compiled
  with ``torch.compile`` when the backend was made with ``compile=True``;
* :meth:`Backend.apply` — the other node products (embedding, readout MLPs).

A backend is not part of a model's state: checkpoints hold architecture and weights, and the
backend is chosen when a model is built, loaded or trained (:func:`segnn.use_backend`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.utils.checkpoint import checkpoint

from segnn.backends.geometry import Geometry
from segnn.o3 import ConditionedTensorProduct
from segnn.o3.mlp import ProductFunction

EDGE_CHUNK = 32768
"""Edges per part of a layer's messages (:meth:`Backend.convolve`): a part's intermediate
features take tens of MB where a large system's whole graph took GB (8,192 to 131,072 edges
timed alike on a 9,000-atom box; ``docs/periodic.md``)."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports. ``forces``: gradients with respect to positions; ``force_training``:
    second derivatives (training on forces backpropagates through ``-dE/dx``); ``compile``:
    its node updates may be compiled with ``torch.compile``; ``fullgraph``: a whole training step
    on padded batches (:mod:`segnn.data.padding`) traces into one graph
    (``torch.compile(fullgraph=True)``, CUDA graphs); ``radial_weights``: messages with learnt
    radial weights or cutoff envelopes (``model.radial: bessel``)."""

    devices: tuple[str, ...] = ("cpu", "cuda")
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)
    forces: bool = True
    force_training: bool = True
    compile: bool = True
    fullgraph: bool = True
    radial_weights: bool = True

    def missing(
        self,
        device: torch.device,
        dtype: torch.dtype,
        forces: bool = False,
        force_training: bool = False,
        radial_weights: bool = False,
        compile: bool = False,
    ) -> list[str]:
        """What of the asked-for use this backend lacks, in words (empty: supported)."""
        wanted = {
            f"device {device.type}": device.type in self.devices,
            f"dtype {str(dtype).removeprefix('torch.')}": dtype in self.dtypes,
            "forces": self.forces or not forces,
            "training on forces (second derivatives)": self.force_training or not force_training,
            "radial weights (model.radial 'bessel')": self.radial_weights or not radial_weights,
            "torch.compile": self.compile or not compile,
        }
        return [what for what, supported in wanted.items() if not supported]


class Backend:
    """Per-edge messages with segnn's own tensor products (the ``plain`` backend), and the
    interface every backend implements (module docstring).

    ``compile``: compile each layer's node update with ``torch.compile`` on first use (dynamic
    in the number of atoms; the first call compiles, torch caches the kernels on disk). Compiled
    code cannot differentiate twice. ``edge_chunk``: edges per part of the messages
    (:meth:`convolve`; ``None``: all at once).
    """

    name: ClassVar[str] = "plain"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, compile: bool = False, edge_chunk: int | None = EDGE_CHUNK):
        if compile and not self.capabilities.compile:
            raise ValueError(f"backend {self.name!r} cannot be compiled")
        if edge_chunk is not None and edge_chunk < 2:
            raise ValueError(f"edge_chunk must be at least 2 edges (one pair), got {edge_chunk}")
        self.compile = compile
        self.edge_chunk = edge_chunk
        self.compiled_updates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    uses_frames: ClassVar[bool] = False
    """Whether the message products run in the edge frame (their frame plans are built by
    :meth:`prepare`)."""

    def prepare(self, model: torch.nn.Module) -> None:
        """Fill ``model``'s coefficient caches (and frame plans) for its dtype and device now,
        eagerly: code compiled later must find them, not build them while tracing."""
        messages = {
            id(module)
            for layer in model.modules()
            if hasattr(layer, "message_mlp")
            for module in layer.message_mlp.modules()
        }
        for module in model.modules():
            if isinstance(module, ConditionedTensorProduct):
                parameter = next(module.parameters())
                frame = self.uses_frames and id(module) in messages
                module.prepare(parameter.dtype, parameter.device, frame=frame)

    @classmethod
    def runs_here(cls) -> bool:
        """Whether this machine can run the backend (e.g. a C++ compiler for built kernels)."""
        return True

    def product_function(self) -> ProductFunction | None:
        """How each tensor product is evaluated: ``None``, the product itself."""
        return None

    def frames(self, geometry: Geometry, lmax: int) -> Geometry:
        """``geometry`` with what this backend's messages need (here: nothing)."""
        return geometry

    def convolve(self, layer, h: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        """``Σ_j m_ij`` per atom, ``[N, irreps_hidden.dim]``, for ``h [N, irreps_hidden.dim]``:
        :meth:`messages` of at most ``edge_chunk`` edges at a time, summed in place. Taking
        gradients of a model in evaluation mode (forces in MD), each part's messages are
        recomputed in the backward pass rather than kept (``torch.utils.checkpoint``); in
        training, where batches are small, they are kept."""
        parts = geometry.chunks(self.edge_chunk)
        if len(parts) == 1:
            messages, receivers = self.messages(layer, h, geometry)
            return layer.aggregate(messages, receivers, dim_size=h.shape[0])
        recompute = torch.is_grad_enabled() and not layer.training
        aggregated = h.new_zeros(h.shape)
        for part in parts:
            if recompute:
                messages, receivers = checkpoint(self.messages, layer, h, part, use_reentrant=False)
            else:
                messages, receivers = self.messages(layer, h, part)
            # scatter_add_ keeps only the (broadcast) index for its backward; index_add_
            # would keep every part's messages
            aggregated.scatter_add_(0, receivers.unsqueeze(1).expand_as(messages), messages)
        return aggregated

    def messages(
        self, layer, h: torch.Tensor, geometry: Geometry
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The messages of ``geometry``'s edges ``[E, irreps_hidden.dim]`` and the atom each
        goes to ``[E]``."""
        source, target = geometry.edge_index
        messages = layer.message(
            h.index_select(0, target),
            h.index_select(0, source),
            geometry.edge_attr,
            geometry.edge_scalars,
            geometry.edge_weights,
            self.product_function(),
        )
        return messages, target

    def update(
        self, layer, h: torch.Tensor, aggregated: torch.Tensor, geometry: Geometry
    ) -> torch.Tensor:
        """The layer's node update of ``h`` with the summed messages, ``[N, irreps_hidden.dim]``."""
        if self.compile:
            node_update = self.compiled_updates.get(layer)
            if node_update is None:
                node_update = self.compiled_updates[layer] = compiled_node_update(layer)
            return node_update(aggregated, h, geometry.node_attr, geometry.batch)
        return layer.node_update(
            aggregated, h, geometry.node_attr, geometry.batch, self.product_function()
        )

    def apply(self, module: torch.nn.Module, x: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        """A node product or steerable MLP ``module`` of ``x [N, in]`` conditioned on
        ``attr [N, attr]`` → ``[N, out]``."""
        product = self.product_function()
        if product is None:
            return module(x, attr)
        if isinstance(module, ConditionedTensorProduct):
            return product(module, x, attr)
        return module(x, attr, product)

    def __deepcopy__(self, memo) -> Backend:
        # compiled code is rebuilt for the copy
        return type(self)(compile=self.compile, edge_chunk=self.edge_chunk)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, compile={self.compile}, "
            f"edge_chunk={self.edge_chunk})"
        )


def compiled_node_update(layer):
    """``layer.node_update`` compiled with ``torch.compile``, the first dimension (atoms) of its
    tensor arguments marked dynamic: batches of other sizes reuse the code. Feature widths and
    the attribute scale stay constants of the graph (``dynamic=True`` made them symbolic too,
    which restarted the tracing and gave generic kernels)."""
    parameter = next(layer.parameters())
    for module in layer.update_mlp.modules():  # caches filled outside the compiled graph
        if isinstance(module, ConditionedTensorProduct):
            module.prepare(parameter.dtype, parameter.device)
    compiled = torch.compile(layer.node_update, dynamic=False)

    def node_update(*tensors: torch.Tensor) -> torch.Tensor:
        for tensor in tensors:
            torch._dynamo.maybe_mark_dynamic(tensor, 0)
        return compiled(*tensors)

    return node_update
