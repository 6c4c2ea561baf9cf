#!/usr/bin/env bash
# One run that verifies the GPU issue on an NVIDIA machine (CuPy and PyTorch CUDA preinstalled):
# the real-GPU tests (tests/gpu/test_cupy.py; the fake-CuPy tests run in CI anyway), then the
# benchmark with short settings. Prints every figure; copies logs to $OUT when it is set.
# Budget: under ~6 minutes on an H200 (the tests compile CuPy's kernels on first use).
#
#     bash bench/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/cutedl_gpu_check}"
mkdir -p "$OUT"
export PYTHONDONTWRITEBYTECODE=1
start=$(date +%s)

echo "== machine"
nvidia-smi -L 2>&1 | head -4
python3 - <<'PY' 2>&1
import sys
print("python", sys.version.split()[0])
try:
    import numpy, cupy
    print("numpy", numpy.__version__, "cupy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "devices", cupy.cuda.runtime.getDeviceCount())
except Exception as err:
    print("CuPy problem:", type(err).__name__, err)
try:
    import torch
    print("torch", torch.__version__, "cuda available:", torch.cuda.is_available())
except Exception as err:
    print("torch problem (the benchmark goes on without it):", type(err).__name__, err)
PY

echo "== tests/gpu/test_cupy.py (skip reasons shown with -rs)"
timeout 270 python3 -m pytest -p no:cacheprovider -o addopts="" -q -rs --durations=8 tests/gpu/test_cupy.py \
    2>&1 | tee "$OUT/test_cupy.log" | tail -60
echo "tests exit status: ${PIPESTATUS[0]} (124 = timed out; see $OUT/test_cupy.log)"

echo "== bench/gpu.py (s/epoch extrapolated from 50 timed steps)"
timeout 200 python3 bench/gpu.py --steps 50 --warmup 5 --cpu-steps 5 --json "$OUT/gpu_bench.json" \
    2>&1 | tee "$OUT/gpu_bench.log"
echo "bench exit status: ${PIPESTATUS[0]}"
echo "== done in $(( $(date +%s) - start )) s; logs in $OUT"
