#!/usr/bin/env bash
# Installs nvcc 13.0 from PyPI into a virtual environment (no GPU, driver or apt repository
# needed) and prints the nvcc path, so CI can compile every kernel:
#   export NVCC=$(scripts/install-nvcc.sh /work/nvcc-venv)
# Idempotent: a venv that already has this nvcc is reused. Progress goes to stderr; stdout is
# only the path.
set -euo pipefail
venv="${1:?usage: install-nvcc.sh VENV_DIR}"
pkgs=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85
      nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96)

find_nvcc() {
  local f
  for f in "$venv"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc; do
    [ -x "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

if nvcc=$(find_nvcc) && "$nvcc" --version 2>/dev/null | grep -q 'release 13.0'; then
  echo "$nvcc"
  exit 0
fi
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "${pkgs[@]}" >&2
nvcc=$(find_nvcc) || { echo "install-nvcc.sh: nvcc not found under $venv after install" >&2; exit 1; }
"$nvcc" --version >&2
echo "$nvcc"
