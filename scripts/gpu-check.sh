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
# Limits add up to 475 s (under 8 minutes with the bundle transfer); each step is cut at its limit.
step 10 "device" nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
# inference vs CPU, one fp16 training step vs CPU (loss, logits, every gradient), and the
# 200-step training curves (CPU, GPU with host AdamW, GPU with device AdamW).
step 140 "GPU tests (cuda_backend)" gpu-bundle/cuda_backend --test-threads=1 --nocapture
# inference at batch 1, 8, 32, 128 and training at batch 16, 64 (base 32, depth 4, 192x192).
step 90 "cineseg benchmarks (inference, training)" gpu-bundle/cuda_backend --ignored bench_ --test-threads=1 --nocapture
step 25 "fp16 tensor-core peak (torch matmul 8192^3)" python3 - <<'PY'
import torch, time
a = torch.randn(8192, 8192, device="cuda", dtype=torch.half); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.time(); n = 20
for _ in range(n): a @ b
torch.cuda.synchronize(); print(f"BENCH fp16 matmul peak: {2 * 8192**3 * n / (time.time() - t) / 1e12:.1f} TFLOP/s")
PY
step 110 "PyTorch eager AMP (unet_ref.py bench)" python3 scripts/unet_ref.py bench --device cuda --batch 1,8,16,32,64,128
# torch.compile recompiles per batch size: only the training batches fit in the time.
step 100 "PyTorch compiled (unet_ref.py bench --compile)" python3 scripts/unet_ref.py bench --device cuda --batch 16,64 --compile
grep -E "BENCH|^engine|^pytorch|^# U-Net|skipped|^test |test result|first-10|panicked|: exit" "$log" | tee "$out/gpu-summary.txt"
