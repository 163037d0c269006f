#!/usr/bin/env bash
# Regenerates the float64 PyTorch goldens in tests/golden (small: base 8, depth 2, 64x64).
# Needs the reference venv: bash ../shared/bench/setup-venv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-../shared-venv/bin/python}
ref=../shared/bench/unet_ref.py
g=tests/golden
# 1. PyTorch-exported fresh weights (PyTorch -> cineseg direction).
"$py" "$ref" export --base 8 --depth 2 --seed 0 --out $g/unet_b8_d2.safetensors
"$py" "$ref" golden --weights $g/unet_b8_d2.safetensors --batch 2 --size 64 --seed 1 --out $g/golden_b8_d2_s64.safetensors
# 2. cineseg-written weights with non-trivial BatchNorm statistics (cineseg -> PyTorch direction).
cargo run -q --release --example make_test_model -- $g/cineseg_b8_d2.safetensors
"$py" "$ref" golden --weights $g/cineseg_b8_d2.safetensors --batch 3 --size 32 --seed 2 --out $g/golden_cineseg_b8_d2_s32.safetensors
ls -la $g
