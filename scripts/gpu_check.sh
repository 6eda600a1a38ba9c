#!/usr/bin/env bash
# The prepared GPU check (under 8 minutes on one GPU): the backend parity and equivariance tests
# on CUDA, the QM9 benchmark of every backend that runs there, a short QM9 training.
# Results land under $OUT (default gpu_check/); put the numbers in docs/performance.md.
#   OUT=gpu_check bash scripts/gpu_check.sh
# Python: .venv when there is one, else the machine's python3 (the lent GPU machines have torch,
# e3nn and torch_geometric but no internet): segnn is installed there without dependencies,
# and the missing ones (ase, qm9pack, ...) from wheels in gpu_wheels/ (made here with
# `pip download -d gpu_wheels ase qm9pack vesin`, then carried).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
else
    PY=python3
    {
        [ -d gpu_wheels ] && $PY -m pip install --no-index --find-links gpu_wheels gpu_wheels/*.whl
        $PY -m pip install --no-deps --no-build-isolation -e .
    } >"$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
fi
$PY -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')" | tee "$OUT/device.txt"
status=0
SEGNN_TEST_DEVICE=cuda timeout 150 $PY -m pytest -q -x -p no:cacheprovider tests/test_backends.py \
    2>&1 | tee "$OUT/tests_cuda.log" | tail -5 || status=1
timeout 300 $PY scripts/benchmark.py qm9 --device cuda --repeats 10 --warmup 3 \
    --backend plain --backend edge_frame --backend edge_frame_compiled \
    --backend edge_frame_fullgraph \
    --output "$OUT/benchmark_qm9_cuda.json" >"$OUT/benchmark_qm9_cuda.log" 2>&1 || status=1
tail -40 "$OUT/benchmark_qm9_cuda.log"
timeout 200 $PY -m segnn.cli train --config configs/qm9.yaml --set data.target=homo \
    --set train.max_minutes=2 --set train.device=cuda --set train.runs_dir="$OUT/runs" \
    --set train.run_name=qm9_homo_2min >"$OUT/train_qm9.log" 2>&1 || status=1
cp "$OUT/runs/qm9_homo_2min/results.json" "$OUT/train_qm9_results.json" 2>/dev/null && cat "$OUT/train_qm9_results.json"
rm -rf "$OUT/runs"
exit $status
