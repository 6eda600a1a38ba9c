"""Neighbour lists with periodic images (segnn.data.neighbours): molecules give the radius
graph's edges in its order; periodic cells, even smaller than the cutoff, give every image."""

import itertools

import numpy as np
import pytest
import torch

from segnn.data import radius_graph
from segnn.data.neighbours import neighbour_list


def brute_force(positions, cutoff, cell, pbc, reach=3):
    """``{(source, target, shift)}`` of all images within ``cutoff``, by enumeration."""
    ranges = [range(-reach, reach + 1) if periodic else range(1) for periodic in pbc]
    edges = set()
    for shift in itertools.product(*ranges):
        offset = np.asarray(shift, dtype=float) @ cell
        for source, target in itertools.product(range(len(positions)), repeat=2):
            if source == target and not any(shift):
                continue
            if np.linalg.norm(positions[source] - positions[target] + offset) < cutoff:
                edges.add((source, target, shift))
    return edges


def as_set(edge_index, shifts):
    return {
        (int(s), int(t), tuple(int(round(x)) for x in shift))
        for (s, t), shift in zip(edge_index.T.tolist(), shifts.tolist())
    }


def test_molecules_give_the_radius_graph_in_its_order():
    torch.manual_seed(0)
    positions = torch.randn(40, 3, dtype=torch.float64) * 2
    edge_index, shifts = neighbour_list(positions, 2.5)
    assert torch.equal(edge_index, radius_graph(positions, 2.5))
    assert not shifts.any()


@pytest.mark.parametrize(
    ("cell", "pbc"),
    [
        (np.diag([6.0, 7.0, 8.0]), (True, True, True)),
        (np.array([[2.1, 0.0, 0.0], [0.7, 2.4, 0.0], [0.3, 0.5, 2.2]]), (True, True, True)),
        (np.diag([2.5, 30.0, 30.0]), (True, False, False)),
    ],
    ids=["orthorhombic", "triclinic-smaller-than-cutoff", "wire"],
)
def test_periodic_cells_give_every_image(cell, pbc):
    rng = np.random.default_rng(1)
    positions = rng.random((7, 3)) @ cell
    edge_index, shifts = neighbour_list(torch.as_tensor(positions), 3.0, cell, pbc)
    edges = as_set(edge_index, shifts)
    assert edges == brute_force(positions, 3.0, cell, pbc)
    assert len(edges) == edge_index.shape[1]
    half = edge_index.shape[1] // 2  # paired layout: the reverse edge carries the negated shift
    assert torch.equal(edge_index[:, half:], edge_index[:, :half].flip(0))
    assert torch.equal(shifts[half:], -shifts[:half])


def test_bad_cells_are_named():
    positions = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="span no volume"):
        neighbour_list(positions, 2.0, np.diag([3.0, 0.0, 3.0]), (True, True, True))
    with pytest.raises(ValueError, match="non-finite"):
        neighbour_list(positions, 2.0, np.diag([3.0, np.nan, 3.0]), (True, True, True))
