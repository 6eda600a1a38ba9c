"""Data: graph construction and loaders."""

from segnn.data.atoms import AtomsDataset, atoms_to_graph
from segnn.data.graph import full_graph, is_paired, mark_paired, radius_graph
from segnn.data.loader import RadiusGraphCollate

__all__ = [
    "AtomsDataset",
    "RadiusGraphCollate",
    "atoms_to_graph",
    "full_graph",
    "is_paired",
    "mark_paired",
    "radius_graph",
]
