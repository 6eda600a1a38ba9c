"""``segnn export``: a trained force field as one AOTInductor ``.pt2`` file.

As NequIP does: the energy, its forces and its virial are one function (autograd inside);
``make_fx`` unfolds the backward pass into the graph with symbolic sizes, ``torch.export``
makes the numbers of atoms and of edge pairs dynamic, and AOTInductor compiles the graph ahead
of time into a package with its metadata (:mod:`segnn.deploy.contract`). The ``edge_frame``
backend is the one exported (PyTorch ops only; the fused CPU kernels do not trace and give no
forces).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.fx.experimental._config as fx_config
from ase import Atoms
from ase.data import atomic_numbers
from torch.export import Dim, export
from torch.fx.experimental.proxy_tensor import make_fx
from torch_geometric.data import Data

from segnn.checkpoint import load_checkpoint, model_from_checkpoint
from segnn.data.graph import mark_paired
from segnn.data.neighbours import neighbour_list
from segnn.deploy.contract import FORMAT
from segnn.deploy.exported import ExportError
from segnn.models import EnergyModel, use_backend

BACKEND = "edge_frame"


class EnergyForcesVirial(torch.nn.Module):
    """The exported function (:mod:`segnn.deploy.contract`) around an :class:`EnergyModel`."""

    def __init__(self, model: EnergyModel):
        super().__init__()
        self.model = model

    def forward(
        self,
        pos: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shift: torch.Tensor,
        cell: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        data = mark_paired(
            Data(
                pos=pos,
                z=atomic_numbers,
                edge_index=edge_index,
                edge_shift=edge_shift,
                cell=cell.unsqueeze(0),
                batch=torch.zeros_like(atomic_numbers),
            )
        )
        data.num_graphs = 1
        energy, forces, virial = self.model.energy_forces_virial(data, True, True)
        scale = self.model.scale.to(pos.dtype)
        reference = self.model.atom_reference.to(pos.dtype)[atomic_numbers].sum()
        return reference + scale * energy[0], scale * forces, scale * virial[0]


def example_inputs(model: EnergyModel, cutoff: float, dtype: torch.dtype) -> tuple:
    """A periodic box of the model's species (random positions, seed 0) with several atoms
    and pairs: sizes for tracing that no static dimension shares."""
    rng = np.random.default_rng(0)
    numbers = [atomic_numbers[symbol] for symbol in model.network.species]
    length = 1.3 * cutoff
    atoms = Atoms(
        numbers=[numbers[i % len(numbers)] for i in range(11)],
        positions=rng.uniform(0, length, (11, 3)),
        cell=np.diag([length, 1.1 * length, 0.9 * length]),
        pbc=True,
    )
    pos = torch.tensor(atoms.positions, dtype=dtype)
    edge_index, shifts = neighbour_list(pos, cutoff, atoms.cell.array, atoms.pbc)
    cell = torch.tensor(atoms.cell.array, dtype=dtype)
    return pos, torch.tensor(atoms.numbers), edge_index, shifts.to(dtype), cell


def trace(function: torch.nn.Module, inputs: tuple) -> torch.fx.GraphModule:
    """``function`` with its backward pass unfolded, sizes symbolic. Views recorded for the
    traced strides become reshapes (the same values; strides may differ when re-traced)."""
    with fx_config.patch(use_duck_shape=False):
        graph = make_fx(function, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*inputs)
    views = (torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default)
    for node in graph.graph.nodes:
        if node.op == "call_function" and node.target in views:
            node.target = torch.ops.aten.reshape.default
    graph.recompile()
    return graph


def export_model(
    checkpoint: str | Path,
    output: str | Path,
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
) -> dict[str, str]:
    """Export the force field of ``checkpoint`` to ``output`` (``.pt2``) for ``device`` in
    ``dtype``; returns the metadata written with it. Raises ``ValueError`` for a checkpoint that
    is not an energy model, :class:`ExportError` (naming the backend) when tracing fails."""
    payload = load_checkpoint(checkpoint)
    model = model_from_checkpoint(payload)
    if not isinstance(model, EnergyModel):
        raise ValueError(
            f"{checkpoint} holds a model of {model.target['description']}; segnn export takes "
            "force fields (model.task 'energy')"
        )
    model.network.to(dtype=dtype)
    model = model.to(device).eval()
    backend = use_backend(model, BACKEND, forces=True)
    function = EnergyForcesVirial(model)
    inputs = tuple(t.to(device) for t in example_inputs(model, model.cutoff, dtype))
    atoms = Dim("atoms", min=2, max=2**30)
    pairs = Dim("pairs", min=1, max=2**30)
    dynamic = ((atoms, None), (atoms,), (None, 2 * pairs), (2 * pairs, None), (None, None))
    try:
        program = export(trace(function, inputs), inputs, dynamic_shapes=dynamic, strict=False)
    except Exception as error:  # noqa: BLE001 - tracing fails in many ways; name the stage
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ExportError(
            f"{checkpoint} could not be traced with the {backend.name} backend: {message}"
        ) from error
    from segnn import __version__

    metadata = {
        "format": FORMAT,
        "segnn_version": __version__,
        "cutoff": repr(float(model.cutoff)),
        "species": json.dumps(list(model.network.species)),
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(torch.device(device)),
        "backend": backend.name,
        "config": json.dumps(payload["config"]),
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    torch._inductor.aoti_compile_and_package(
        program,
        package_path=str(output),
        inductor_configs={"aot_inductor.metadata": metadata, "cpp.simdlen": 1},
    )
    return metadata
