"""notebooks/quickstart.ipynb stays runnable: its code cells run in order (IPython display stubbed)."""

import json
import sys
import types
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    display = types.ModuleType("IPython.display")
    display.Image = lambda filename: filename
    display.display = lambda image: print("displayed", image)
    ipython = types.ModuleType("IPython")
    # matplotlib asks whether it runs inside IPython, and which version
    ipython.get_ipython = lambda: None
    ipython.version_info = (9, 0)
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"]).replace("runs/notebook", str(tmp_path / "runs"))
            exec(compile(source, str(NOTEBOOK), "exec"), namespace)
    assert namespace["results"]["num_test"] == 200
    assert (namespace["run"] / "parity_test.png").is_file()
