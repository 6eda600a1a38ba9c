"""scripts/budget_curve.py: one run per budget, a JSON record and a PNG."""

import json

import pytest
from test_training import TINY


@pytest.fixture(scope="module")
def budget_curve(load_script):
    return load_script("budget_curve")


def test_budget_curve_runs_each_budget(budget_curve, tmp_path):
    overrides = [item for o in [*TINY, f"train.runs_dir={tmp_path}"] for item in ("--set", o)]
    output = tmp_path / "curve"
    arguments = ["--config", "configs/qm9_quick.yaml", *overrides, "--minutes", "1", "0.5"]
    assert budget_curve.main([*arguments, "--output", str(output)]) == 0
    record = json.loads(output.with_suffix(".json").read_text())
    assert [point["minutes"] for point in record["points"]] == [0.5, 1.0]
    assert all(point["test_mae"] > 0 and point["steps"] > 0 for point in record["points"])
    assert output.with_suffix(".png").stat().st_size > 1000
    assert len(list(tmp_path.glob("qm9_u0_*"))) == 2  # one run directory per budget


def test_budget_curve_names_a_missing_config(budget_curve, tmp_path, capsys):
    missing = ["--config", str(tmp_path / "nope.yaml"), "--output", str(tmp_path / "curve")]
    assert budget_curve.main(missing) == 2
    assert "config file not found" in capsys.readouterr().err
