"""Shared fixtures: small real molecules as PyG batches; the scripts under scripts/ as modules."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

from segnn.testing import example_batch

SCRIPTS = Path(__file__).parents[1] / "scripts"
if str(SCRIPTS) not in sys.path:  # scripts import their neighbours, tests import them too
    sys.path.insert(0, str(SCRIPTS))


@pytest.fixture
def batch64() -> Batch:
    return example_batch(dtype=torch.float64)


@pytest.fixture
def batch32() -> Batch:
    return example_batch(dtype=torch.float32)


@pytest.fixture(scope="session")
def load_script():
    """``load_script("benchmark")`` → ``scripts/benchmark.py`` imported as a module."""

    def load(name: str):
        path = SCRIPTS / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
