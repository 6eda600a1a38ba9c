"""Equivariant bases for any matrix group (EMLP, Finzi et al., ICML 2021): groups from
generators, representations built from the defining one, and the null-space solver."""

from segnn.emlp.groups import O13, SO, SO13, D, Group, O, S, Sp, Z, direct_product
from segnn.emlp.reps import Hom, Rep, SphericalHarmonicRep, T, Trivial, V
from segnn.emlp.solve import AmbiguousRankError, EquivariantBasis, equivariant_basis

__all__ = [
    "O13",
    "SO13",
    "AmbiguousRankError",
    "D",
    "EquivariantBasis",
    "Group",
    "Hom",
    "O",
    "Rep",
    "S",
    "SO",
    "Sp",
    "SphericalHarmonicRep",
    "T",
    "Trivial",
    "V",
    "Z",
    "direct_product",
    "equivariant_basis",
]
