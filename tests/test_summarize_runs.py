"""scripts/summarize_runs.py: mean ± std of test results over runs, named errors."""

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def summarize_runs(load_script):
    return load_script("summarize_runs")


def write_run(directory: Path, seed: int, test_mse: float) -> Path:
    directory.mkdir()
    (directory / "results.json").write_text(json.dumps({"test_mse": test_mse, "unit": ""}))
    (directory / "config.yaml").write_text(f"seed: {seed}\n")
    return directory


def test_mean_and_sample_std_over_seeds(summarize_runs, tmp_path, capsys):
    runs = [write_run(tmp_path / f"s{seed}", seed, mse) for seed, mse in enumerate([1.0, 2.0, 4.0])]
    output = tmp_path / "summary.json"
    assert summarize_runs.main([*map(str, runs), "--output", str(output)]) == 0
    summary = json.loads(output.read_text())
    assert summary["summary"]["test_mse"]["mean"] == pytest.approx(7 / 3)
    assert summary["summary"]["test_mse"]["std"] == pytest.approx(1.5275252, rel=1e-6)
    assert [run["seed"] for run in summary["runs"]] == [0, 1, 2]
    assert "test_mse" in capsys.readouterr().out


def test_unfinished_run_is_named(summarize_runs, tmp_path, capsys):
    (tmp_path / "running").mkdir()
    assert summarize_runs.main([str(tmp_path / "running")]) == 1
    assert "results.json not found" in capsys.readouterr().err
