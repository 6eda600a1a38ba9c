"""The README's Python example runs as written."""

import re
from pathlib import Path


def test_readme_python_example_runs():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.DOTALL)
    assert blocks, "README has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {})


def test_readme_periodic_example_runs():
    """The periodic example, with an untrained model of the config in place of a checkpoint
    and two steps of dynamics."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.DOTALL)
    (block,) = [block for block in blocks if "LangevinBAOAB" in block]
    untrained = 'segnn.build_model(segnn.load_config("configs/water_pbc.yaml"))'
    assert '"runs/<run>/best.pt"' in block and ".run(1000)" in block
    block = block.replace('"runs/<run>/best.pt"', untrained).replace(".run(1000)", ".run(2)")
    exec(compile(block, "README.md", "exec"), {})
