import importlib.util

import pytest
import torch

import segnn.data.graph as graph_module
from segnn.data import full_graph, radius_graph


def brute_force_edges(pos, batch, cutoff):
    edges = set()
    for i in range(len(pos)):
        for j in range(len(pos)):
            if i != j and batch[i] == batch[j] and torch.dist(pos[i], pos[j]) < cutoff:
                edges.add((j, i))
    return edges


def random_batch(sizes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    pos = torch.randn(sum(sizes), 3, generator=generator, dtype=torch.float64) * 1.5
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return pos, batch


def as_set(edge_index):
    return {tuple(edge) for edge in edge_index.T.tolist()}


def test_radius_graph_matches_brute_force_per_graph():
    pos, batch = random_batch([5, 1, 12, 7])
    # shift graphs on top of each other: no edge may cross between graphs
    edge_index = radius_graph(pos, 2.0, batch)
    assert as_set(edge_index) == brute_force_edges(pos, batch, 2.0)
    assert len(as_set(edge_index)) == edge_index.shape[1]
    assert not bool((edge_index[0] == edge_index[1]).any())
    assert bool((batch[edge_index[0]] == batch[edge_index[1]]).all())


@pytest.mark.parametrize("build", ["radius", "full"])
def test_graphs_come_in_the_paired_layout(build):
    pos, batch = random_batch([9, 6, 4])
    edge_index = radius_graph(pos, 2.5, batch) if build == "radius" else full_graph(19, batch)
    half = edge_index.shape[1] // 2
    assert half > 0 and edge_index.shape[1] == 2 * half
    assert torch.equal(edge_index[:, half:], edge_index[:, :half].flip(0))
    assert bool((edge_index[0, :half] < edge_index[1, :half]).all())
    key = edge_index[1, :half] * 100 + edge_index[0, :half]  # each half sorted
    assert bool((key[1:] > key[:-1]).all())


def test_radius_graph_in_small_chunks(monkeypatch):
    pos, batch = random_batch([13, 4, 20], seed=1)
    expected = radius_graph(pos, 1.8, batch)
    monkeypatch.setattr(graph_module, "_PAIRS_PER_CHUNK", 7)
    assert torch.equal(radius_graph(pos, 1.8, batch), expected)


def test_radius_graph_single_graph_and_isolated_atom():
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [10.0, 0, 0]])
    assert as_set(radius_graph(pos, 2.0)) == {(0, 1), (1, 0)}


def test_radius_graph_rejects_unsorted_batch_and_bad_shapes():
    with pytest.raises(ValueError, match="sorted"):
        radius_graph(torch.zeros(3, 3), 1.0, torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        radius_graph(torch.zeros(3, 2), 1.0)


def test_full_graph_connects_all_pairs_within_graphs():
    batch = torch.tensor([0, 0, 0, 1, 1, 2])
    edge_index = full_graph(6, batch)
    assert edge_index.shape[1] == 3 * 2 + 2 * 1 + 0
    assert as_set(edge_index) == {
        (j, i) for i in range(6) for j in range(6) if i != j and batch[i] == batch[j]
    }


@pytest.mark.skipif(
    importlib.util.find_spec("torch_cluster") is None, reason="torch_cluster not installed"
)
def test_pure_torch_path_matches_torch_cluster(monkeypatch):
    import torch_cluster

    pos, batch = random_batch([8, 15, 3], seed=2)
    reference = torch_cluster.radius_graph(pos, r=2.0, batch=batch, max_num_neighbors=100)
    monkeypatch.setattr(graph_module, "_HAS_TORCH_CLUSTER", False)
    assert as_set(radius_graph(pos, 2.0, batch)) == as_set(reference)
