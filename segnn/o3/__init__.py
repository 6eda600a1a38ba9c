"""Steerable building blocks: irreps, conditioned tensor products, gates, MLPs, norms, attributes."""

from segnn.o3.attributes import SphericalHarmonicsAttributes
from segnn.o3.gate import Gate, gate_irreps
from segnn.o3.irreps import (
    IrrepsConcat,
    balanced_irreps,
    scalar_irreps,
    sh_irrep,
    spherical_harmonics_irreps,
    weight_balanced_irreps,
)
from segnn.o3.mlp import GatedTensorProduct, SteerableMLP
from segnn.o3.norm import EquivariantInstanceNorm
from segnn.o3.radial import (
    BesselBasis,
    PolynomialEnvelope,
    RadialChannelWeights,
    SmoothRadialFeatures,
)
from segnn.o3.tensor_product import ConditionedTensorProduct

__all__ = [
    "BesselBasis",
    "ConditionedTensorProduct",
    "EquivariantInstanceNorm",
    "Gate",
    "GatedTensorProduct",
    "IrrepsConcat",
    "PolynomialEnvelope",
    "RadialChannelWeights",
    "SmoothRadialFeatures",
    "SphericalHarmonicsAttributes",
    "SteerableMLP",
    "balanced_irreps",
    "gate_irreps",
    "scalar_irreps",
    "sh_irrep",
    "spherical_harmonics_irreps",
    "weight_balanced_irreps",
]
