"""scripts/compare_commits.py: an earlier commit's package imported beside the working tree."""

import re
import shutil
import sys

import pytest
import torch

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def test_the_baseline_imports_beside_the_working_tree_and_computes_alike(load_script, tmp_path):
    compare = load_script("compare_commits")
    compare.export_baseline("HEAD", tmp_path)
    package = tmp_path / "segnn_baseline"
    for path in package.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"(?<![\w.])segnn(\.\w|\s+import)", text), path
        assert "segnn_frame" not in text.replace("segnn_baseline_frame", "")
    sys.path.insert(0, str(tmp_path))
    try:
        import segnn_baseline.models as baseline

        import segnn
        from segnn.config import ModelConfig
        from segnn.testing import example_batch

        config = ModelConfig(hidden_features=16, num_layers=1, lmax_attr=1)
        mine, theirs = segnn.SEGNN(config).double(), baseline.SEGNN(config).double()
        theirs.load_state_dict(mine.state_dict())
        batch = example_batch(dtype=torch.float64)
        assert torch.equal(mine(batch), theirs(batch))
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.startswith("segnn_baseline")]:
            del sys.modules[name]
