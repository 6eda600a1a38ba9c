"""Shared fixtures: small real molecules as PyG batches."""

import pytest
import torch
from torch_geometric.data import Batch

from segnn.testing import example_batch


@pytest.fixture
def batch64() -> Batch:
    return example_batch(dtype=torch.float64)


@pytest.fixture
def batch32() -> Batch:
    return example_batch(dtype=torch.float32)
