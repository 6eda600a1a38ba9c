"""The seam every backend implements.

A backend decides *how* a :class:`~segnn.models.SEGNN` computes, never *what*: every backend
evaluates the same function of the same parameters (``tests/test_backends.py`` holds them to
the ``e3nn`` reference). It sees a layer only through its
:class:`~segnn.backends.view.LayerView`, and the model calls it at these points:

* :meth:`Backend.prepare` — when chosen: fill caches for the model's dtype and device;
* :meth:`Backend.frames` — once per batch, after the geometry: add what the messages need
  (edge frames, edge pairs, sorted receivers) to the :class:`~segnn.backends.geometry.Geometry`;
* :meth:`Backend.propagates` — per layer and batch: whether the layer computes its messages
  through PyG's ``propagate`` (``message`` → ``aggregate`` → ``update``, the reference path)
  or through its fused hook ``message_and_aggregate``, which calls :meth:`Backend.convolve`:
  gather both ends of every edge, the messages (:meth:`Backend.messages`), the sum over each
  atom's incoming messages → ``[N, irreps_hidden.dim]``. Large graphs are convolved
  ``edge_chunk`` edges at a time (:meth:`Backend.parts`), and in evaluation with gradients
  (forces of a large system) each part's messages are recomputed in the backward pass instead
  of stored: memory grows with the atoms, not with edges × features;
* :meth:`Backend.update` — per layer: the node update (update MLP, residual, norm), compiled
  with ``torch.compile`` when the backend was made with ``compile=True``;
* :meth:`Backend.apply` — the other node products (embedding, readout MLPs).

A backend is not part of a model's state: checkpoints hold architecture and weights, and the
backend is chosen when a model is built, loaded or trained (:func:`segnn.use_backend`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.utils.checkpoint import checkpoint

from segnn.backends.geometry import Geometry
from segnn.backends.view import LayerView
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
    on padded batches traces into one graph (``torch.compile(fullgraph=True)``; what
    ``scripts/benchmark.py`` times as ``<name>_fullgraph``); ``radial_weights``: messages with
    learnt radial weights or cutoff envelopes (``model.radial: bessel``)."""

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
    """The interface every backend implements (module docstring), with what they share: parts
    of ``edge_chunk`` edges, the node update (compiled or not), node products.

    A subclass sets ``name`` and ``capabilities`` and implements :meth:`messages`; it may
    override :meth:`frames`, :meth:`parts`, :meth:`convolve`, :meth:`propagates`,
    :meth:`prepare_layer` and :meth:`product_function`.

    ``compile``: compile each layer's node update with ``torch.compile`` on first use (dynamic
    in the number of atoms; the first call compiles, torch caches the kernels on disk). Compiled
    code cannot differentiate twice. ``edge_chunk``: edges per part of the messages
    (:meth:`convolve`; ``None``: all at once).
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, compile: bool = False, edge_chunk: int | None = EDGE_CHUNK):
        if compile and not self.capabilities.compile:
            raise ValueError(f"backend {self.name!r} cannot be compiled")
        if edge_chunk is not None and edge_chunk < 2:
            raise ValueError(f"edge_chunk must be at least 2 edges (one pair), got {edge_chunk}")
        self.compile = compile
        self.edge_chunk = edge_chunk
        self.compiled_updates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @classmethod
    def runs_here(cls) -> bool:
        """Whether this machine can run the backend (e.g. a C++ compiler for built kernels)."""
        return True

    def prepare(
        self, products: Iterable[ConditionedTensorProduct], layers: Iterable[LayerView]
    ) -> None:
        """Fill the coefficient caches of a model's ``products`` for their dtype and device now,
        eagerly (code compiled later must find them, not build them while tracing), and what
        each of its ``layers`` needs (:meth:`prepare_layer`)."""
        for product in products:
            parameter = next(product.parameters())
            product.prepare(parameter.dtype, parameter.device)
        for layer in layers:
            parameter = next(layer.message_steps[0].product.parameters())
            self.prepare_layer(layer, parameter.dtype, parameter.device)

    def prepare_layer(self, layer: LayerView, dtype: torch.dtype, device: torch.device) -> None:
        """Build what this backend keeps per layer (here: nothing)."""

    def product_function(self) -> ProductFunction | None:
        """How each tensor product is evaluated: ``None``, the product itself."""
        return None

    def frames(self, geometry: Geometry, lmax: int) -> Geometry:
        """``geometry`` with what this backend's messages need (here: nothing)."""
        return geometry

    def parts(self, geometry: Geometry, size: int | None) -> list[Geometry]:
        """The edges in consecutive parts of at most ``size`` edges (``None``: one part, the
        geometry itself); node features are shared."""
        if size is None or geometry.num_edges <= size:
            return [geometry]
        return [
            geometry.edge_part(slice(start, start + size))
            for start in range(0, geometry.num_edges, size)
        ]

    def propagates(self, geometry: Geometry) -> bool:
        """Whether a layer runs PyG's ``message`` → ``aggregate`` on this geometry (the reference
        path) rather than :meth:`convolve` (here: never)."""
        return False

    def convolve(self, layer: LayerView, h: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        """``Σ_j m_ij`` per atom, ``[N, irreps_hidden.dim]``, for ``h [N, irreps_hidden.dim]``:
        :meth:`messages` of each of :meth:`parts`, summed in place. Taking gradients of a
        model in evaluation mode (forces in MD), each part's messages are recomputed in the
        backward pass rather than kept (``torch.utils.checkpoint``); in training, where batches
        are small, they are kept."""
        parts = self.parts(geometry, self.edge_chunk)
        training = layer.message_steps[0].product.training
        recompute = len(parts) > 1 and torch.is_grad_enabled() and not training
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
        self, layer: LayerView, h: torch.Tensor, geometry: Geometry
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The messages of ``geometry``'s edges ``[E, irreps_hidden.dim]`` and the atom each
        goes to ``[E]``."""
        raise NotImplementedError(f"backend {self.name!r} does not compute messages")

    def update(
        self, layer: LayerView, h: torch.Tensor, aggregated: torch.Tensor, geometry: Geometry
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
        # compiled code and caches are rebuilt for the copy
        return type(self)(compile=self.compile, edge_chunk=self.edge_chunk)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, compile={self.compile}, "
            f"edge_chunk={self.edge_chunk})"
        )


def compiled_node_update(layer: LayerView):
    """``layer.node_update`` compiled with ``torch.compile``, the first dimension (atoms) of its
    tensor arguments marked dynamic: batches of other sizes reuse the code. Feature widths and
    the attribute scale stay constants of the graph (``dynamic=True`` made them symbolic too,
    which restarted the tracing and gave generic kernels)."""
    for product in layer.update_products:  # caches filled outside the compiled graph
        parameter = next(product.parameters())
        product.prepare(parameter.dtype, parameter.device)
    compiled = torch.compile(layer.node_update, dynamic=False)

    def node_update(*tensors: torch.Tensor) -> torch.Tensor:
        for tensor in tensors:
            torch._dynamo.maybe_mark_dynamic(tensor, 0)
        return compiled(*tensors)

    return node_update
