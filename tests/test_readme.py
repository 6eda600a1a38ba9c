"""The README's Python example runs as written."""

import re
from pathlib import Path


def test_readme_python_example_runs():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.DOTALL)
    assert blocks, "README has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
