"""scripts/benchmark.py: each benchmark runs its backends on one model and writes its JSON."""

import json

import pytest


@pytest.fixture(scope="module")
def benchmark(load_script):
    return load_script("benchmark")


def test_ethanol_benchmark_times_the_eager_backends(benchmark, tmp_path):
    output = tmp_path / "bench.json"
    tiny = ["--set", "model.hidden_features=8", "--set", "model.num_layers=1"]
    arguments = ["ethanol", "--repeats", "1", "--warmup", "1", "--output", str(output)]
    assert benchmark.main(arguments + tiny) == 0
    result = json.loads(output.read_text())
    assert result["benchmark"] == "ethanol" and result["atoms_per_batch"] == 8 * 9
    for backend in ("e3nn", "segnn", "segnn_edge_frame"):  # energy models cannot be compiled
        assert result[f"{backend}_train_step_ms"] > 0
        assert result[f"{backend}_energy_and_forces_ms"] > 0
    assert "segnn_edge_frame_compiled_train_step_ms" not in result
    assert result["train_step_speedup_segnn_edge_frame_over_e3nn"] == pytest.approx(
        result["e3nn_train_step_ms"] / result["segnn_edge_frame_train_step_ms"]
    )
