"""Both directions of an edge in one frame (segnn.backends.edge_frame.pairs) on segnn's paired layout.
Whole models computing messages pair by pair: tests/test_backends.py."""

import pytest
import torch

from segnn.backends.edge_frame.frames import FrameConcat, frame_rotations
from segnn.backends.edge_frame.pairs import PairMirror, edge_pairs
from segnn.data import RadiusGraphCollate, atoms_to_graph, is_paired
from segnn.testing import example_batch


def test_collated_batches_are_marked_paired_and_single_graphs_batched_by_pyg_are_not():
    from ase.build import molecule
    from torch_geometric.data import Batch

    graphs = [atoms_to_graph(molecule(name), 2.0) for name in ("H2O", "CH4")]
    assert all(is_paired(graph) for graph in graphs)
    assert not is_paired(Batch.from_data_list(graphs))  # halves per graph, not per batch
    assert is_paired(RadiusGraphCollate(2.0)([atoms_to_graph(molecule("H2O"), None)]))


def test_pairs_of_a_paired_graph_are_its_two_halves():
    batch = example_batch()
    edge_index = batch.edge_index
    num_pairs = edge_index.shape[1] // 2
    vectors = batch.pos[edge_index[0]] - batch.pos[edge_index[1]]
    scalars = vectors.pow(2).sum(-1, keepdim=True)
    pairs = edge_pairs(edge_index, frame_rotations(vectors[:num_pairs], 2), scalars, None)
    assert torch.equal(pairs.source, edge_index[0, :num_pairs])
    assert torch.equal(pairs.target, edge_index[1, :num_pairs])
    # messages go to b (a -> b), then to a (b -> a), pair by pair
    assert torch.equal(pairs.receivers[0::2], edge_index[1, :num_pairs])
    assert torch.equal(pairs.receivers[1::2], edge_index[1, num_pairs:])
    assert torch.equal(pairs.edge_scalars, scalars[num_pairs:])  # symmetric in the pair
    # the reverse direction rotates back with (-1)^l D
    assert torch.equal(pairs.back_rotations[0][:, 1], -pairs.rotations[0])
    assert torch.equal(pairs.back_rotations[1][:, 1], pairs.rotations[1])


def test_mirrored_inputs_need_equal_irreps():
    with pytest.raises(ValueError, match="mirrored inputs need equal irreps"):
        PairMirror(FrameConcat(["4x0e+2x1o", "4x0e+3x1o", "1x0e"]))
