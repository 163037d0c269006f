#!/usr/bin/env bash
# Run HERE (the machine with Rust): builds the GPU test executable with nvcc-compiled kernels and
# puts it in gpu-bundle/ (git-ignored), ready to carry to the GPU machine for gpu-check.sh:
#   scripts/gpu-prepare.sh && <run on GPU machine with carry gpu-bundle> bash scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export NVCC="${NVCC:-$(scripts/install-nvcc.sh "${NVCC_VENV:-/work/nvcc-venv}")}"
unset CINESEG_SKIP_NVCC
mkdir -p gpu-bundle
exe=$(cargo test --release --test cuda_backend --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda_backend":
        print(m["executable"])')
[ -n "$exe" ] || { echo "gpu-prepare.sh: cuda_backend test executable not built" >&2; exit 1; }
cp "$exe" gpu-bundle/cuda_backend
# The unstripped test binary is ~61 MiB (debug info); stripped it is ~3.4 MB. What is carried to
# the GPU machine (working tree + gpu-bundle) must stay under 64 MiB, or the run fails to start.
strip gpu-bundle/cuda_backend
ls -la gpu-bundle
limit=$((64 * 1024 * 1024))
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
bundle=$(du -cb gpu-bundle | tail -1 | cut -f1)
total=$((tree + bundle))
echo "carry size: working tree $((tree / 1024 / 1024)) MiB + gpu-bundle $((bundle / 1024 / 1024)) MiB = $((total / 1024 / 1024)) MiB (limit 64 MiB)"
if [ "$total" -ge "$limit" ]; then
  echo "gpu-prepare.sh: $total bytes exceed the 64 MiB that can be carried to the GPU machine" >&2
  exit 1
fi
