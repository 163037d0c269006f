#!/usr/bin/env bash
# Runs the whole test suite, first installing what the tests need on a Debian machine:
#   dcmtk (storescu/echoscu as real DICOM peers, dcmdump), dicom3tools (dciodvfy validates the
#   DICOM SEG we write), a C++ compiler (the CPU simulator that runs the CUDA kernels), and
#   nvcc 13.0 from PyPI so every kernel compiles. The build itself needs only Rust.
# The disk-full test mounts a small tmpfs and so needs root; elsewhere it prints "skipped".
# Tests that need data (../shared/data or $CINESEG_DATA) or a GPU print "skipped: ..." when
# those are absent.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  else
    echo "warning: missing ${need[*]}; install them (apt-get install ${need[*]}) or the tests that need them skip" >&2
  fi
fi

# nvcc from PyPI (no GPU or driver needed): build.rs then compiles every kernel, and a kernel
# compile error fails the build.
if [ -z "${NVCC:-}" ] && [ -x scripts/install-nvcc.sh ] && [ "${CINESEG_NO_NVCC:-0}" != 1 ]; then
  NVCC=$(scripts/install-nvcc.sh "${NVCC_VENV:-$HOME/.cache/cineseg-nvcc-venv}") && export NVCC
fi

cargo test --release "$@"
