"""scripts/benchmark.py: each benchmark runs its backends on one model and writes its JSON."""

import json

import pytest
import torch


@pytest.fixture(scope="module")
def benchmark(load_script):
    return load_script("benchmark")


def run_tiny(benchmark, which: str, repeats: int, output) -> dict:
    """``benchmark.py which`` on an 8-feature, one-layer model; its JSON."""
    arguments = [which, "--repeats", str(repeats), "--warmup", "1", "--output", str(output)]
    tiny = ["--set", "model.hidden_features=8", "--set", "model.num_layers=1"]
    assert benchmark.main(arguments + tiny) == 0
    return json.loads(output.read_text())


def test_ethanol_benchmark_times_the_eager_backends(benchmark, tmp_path):
    result = run_tiny(benchmark, "ethanol", 1, tmp_path / "bench.json")
    assert result["benchmark"] == "ethanol" and result["atoms_per_batch"] == 8 * 9
    for backend in ("e3nn", "plain", "edge_frame"):  # force training: nothing compiled
        assert result[f"{backend}_train_step_ms"] > 0
        assert result[f"{backend}_energy_and_forces_ms"] > 0
    assert not any(key.startswith(("cpu_kernels", "edge_frame_compiled")) for key in result)
    assert result["auto_backend"] == "edge_frame"
    assert result["train_step_speedup_edge_frame_over_e3nn"] == pytest.approx(
        result["e3nn_train_step_ms"] / result["edge_frame_train_step_ms"]
    )


def test_profile_splits_a_training_step_into_op_categories(benchmark):
    tiny = ["model.hidden_features=16", "model.num_layers=1"]
    result = benchmark.profile_qm9(torch.device("cpu"), repeats=1, warmup=1, overrides=tiny)
    categories = ("matmul", "copy", "gather_scatter", "views", "other")
    assert result["train_step_ms"] > 0 and result["matmul_ms_per_step"] > 0
    assert sum(result[f"{c}_share"] for c in categories) == pytest.approx(1.0)
    assert sum(result[f"{c}_ms_per_step"] for c in categories) == pytest.approx(
        result["profiled_aten_self_ms_per_step"]
    )
    assert "aten::mm" in result["slowest_ops_ms_per_step"]


def test_backends_are_chosen_by_name(benchmark, tmp_path):
    output = tmp_path / "bench.json"
    arguments = ["nbody", "--repeats", "1", "--warmup", "1", "--output", str(output)]
    tiny = ["--set", "model.hidden_features=8", "--set", "model.num_layers=1"]
    assert benchmark.main([*arguments, "--backend", "plain", *tiny]) == 0
    result = json.loads(output.read_text())
    assert {
        key.removesuffix("_train_step_ms") for key in result if key.endswith("_train_step_ms")
    } == {"e3nn", "plain"}
    with pytest.raises(SystemExit, match="not available here"):
        benchmark.main([*arguments, "--backend", "fast", *tiny])


def test_interleaved_timing_keeps_every_turn(benchmark):
    calls = []
    functions = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    first, rounds = {}, {}
    medians = benchmark.interleaved(functions, 3, 2, torch.device("cpu"), first, rounds)
    # first call and one more warm-up each, then the turns a, b, a, b, a, b
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert set(first) == set(medians) == {"a", "b"}
    assert [len(rounds[name]) for name in ("a", "b")] == [3, 3]
    assert medians["a"] == sorted(rounds["a"])[1]


@pytest.mark.parametrize("device", ["cpux", "cuda"])
def test_unusable_devices_are_named(benchmark, device, capsys):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        benchmark.main(["nbody", "--device", device])
    assert f"--device {device}" in capsys.readouterr().err.replace("'", "")


@pytest.mark.slow
def test_qm9_benchmark_reports_every_backend_and_turn(benchmark, tmp_path):
    result = run_tiny(benchmark, "qm9", 2, tmp_path / "bench.json")
    assert result["atoms_per_batch_128"] > 128 and result["edges_per_batch_128"] > 0
    assert result["auto_backend"] in benchmark.variants(torch.device("cpu"))
    for backend in benchmark.variants(torch.device("cpu")):
        assert result[f"{backend}_train_molecules_per_s"] > 0
        assert result[f"{backend}_inference_molecules_per_s_batch_1024"] > 0
        if backend != "e3nn":
            turns = result[f"train_speedup_{backend}_over_e3nn_per_turn"]
            assert len(turns) == 2 and all(ratio > 0 for ratio in turns)


def test_scale_benchmark_times_periodic_boxes(benchmark, tmp_path):
    output = tmp_path / "scale.json"
    tiny = ["--set", "model.hidden_features=8", "--set", "model.num_layers=1"]
    arguments = ["scale", "--atoms", "60", "90", "--repeats", "1", "--output", str(output)]
    arguments += ["--edge-chunk", "500", "none", "--md-atoms", "60"]
    assert benchmark.main(arguments + tiny) == 0
    result = json.loads(output.read_text())
    for atoms in (60, 90):
        for chunk in (500, "none"):
            label = f"atoms_{atoms}_chunk_{chunk}"
            assert result[f"{label}_edges"] > 500 and result[f"{label}_energy_forces_s"] > 0
            assert 0 < result[f"{label}_neighbour_list_share"] < 1
            assert result[f"{label}_peak_resident_memory_mb"] > 0
    box = benchmark.water_box(20)
    assert len(box) == 60 and box.get_volume() == pytest.approx(20 / 0.0334)
