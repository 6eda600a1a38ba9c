"""The floors of docs/architecture.md: imports only go down."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "segnn"


def segnn_imports(path: Path) -> set[str]:
    """The segnn modules ``path`` imports (anywhere in it, functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name == "segnn" or name.startswith("segnn."))
    return found


def modules(pattern: str) -> list[Path]:
    return sorted(PACKAGE.glob(pattern))


FORBIDDEN = {
    "config.py": ("segnn",),  # imports nothing of segnn
    "o3/*.py": ("segnn.backends", "segnn.models", "segnn.train", "segnn.data"),
    "backends/**/*.py": ("segnn.models", "segnn.train", "segnn.data", "segnn.api"),
    "models/*.py": ("segnn.train", "segnn.api", "segnn.calculator", "segnn.checkpoint"),
    "train/*.py": ("segnn.api", "segnn.calculator", "segnn.cli"),
    # an exported model runs with torch alone: its loader imports no model code
    "deploy/exported.py": ("segnn.models", "segnn.backends", "segnn.o3", "segnn.train"),
    "deploy/contract.py": ("segnn",),
}


@pytest.mark.parametrize("pattern", list(FORBIDDEN))
def test_imports_only_go_down(pattern):
    paths = modules(pattern)
    assert paths, pattern
    for path in paths:
        for name in segnn_imports(path):
            for floor in FORBIDDEN[pattern]:
                assert not (name == floor or name.startswith(floor + ".")), (
                    f"{path.relative_to(PACKAGE)} imports {name}"
                )
