#!/usr/bin/env bash
# Run ON THE GPU MACHINE (no Rust there): the GPU tests and the benchmark against PyTorch, with a
# log in $OUT/gpu-check.log. Needs gpu-bundle/ from scripts/gpu-prepare.sh (carried over) and
# python3 with torch for the PyTorch anchor. Every step has its own time limit so the whole run
# stays under 8 minutes; a step that fails is logged and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}"
log="$out/gpu-check.log"
mkdir -p "$out"
: > "$log"
step() { # step LIMIT_SECONDS NAME COMMAND...
  local limit=$1 name=$2
  shift 2
  echo "=== $name (limit ${limit}s)" | tee -a "$log"
  local t0=$SECONDS
  timeout "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  echo "=== $name: exit $rc after $((SECONDS - t0))s" | tee -a "$log"
}
step 20 "device" nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
step 120 "GPU tests (cuda_backend)" gpu-bundle/cuda_backend --test-threads=1 --nocapture
step 90 "cineseg inference benchmark" gpu-bundle/cuda_backend --ignored bench_inference --nocapture
step 40 "fp16 tensor-core peak (torch matmul 8192^3)" python3 - <<'PY'
import torch, time
a = torch.randn(8192, 8192, device="cuda", dtype=torch.half); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.time(); n = 20
for _ in range(n): a @ b
torch.cuda.synchronize(); print(f"BENCH fp16 matmul peak: {2 * 8192**3 * n / (time.time() - t) / 1e12:.1f} TFLOP/s")
PY
step 120 "PyTorch eager AMP (unet_ref.py bench)" python3 scripts/unet_ref.py bench --device cuda --batch 1,8,32,128
step 150 "PyTorch compiled (unet_ref.py bench --compile)" python3 scripts/unet_ref.py bench --device cuda --batch 1,8,32,128 --compile
grep -E "BENCH|^engine|^torch|^# U-Net|skipped|test result" "$log" | tee "$out/gpu-summary.txt"
