#!/usr/bin/env bash
# Runs the whole test suite, first installing what the tests need on a Debian machine:
#   dcmtk (storescu/echoscu as real DICOM peers, dcmdump), dicom3tools (dciodvfy validates every
#   DICOM object we write), Orthanc (the PACS results are sent to), Chromium (renders
#   report.html), a C++ compiler (the CPU simulator that runs the CUDA kernels), a Python venv
#   with highdicom, dcmqi and nibabel (the readers of our SR, SEG and NIfTI), and nvcc 13.0 from
#   PyPI so every kernel compiles. The build itself needs only Rust.
# The disk-full test mounts a small tmpfs and so needs root; elsewhere it prints "skipped".
# Tests that need data (../shared/data or $CINESEG_DATA) or a GPU print "skipped: ..." when
# those are absent.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || need+=(orthanc)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
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

# The readers of what we write (tests/result_readers.rs): highdicom, dcmqi, nibabel.
PYVENV="${CINESEG_PYVENV:-$HOME/.cache/cineseg-pyvenv}"
if [ ! -x "$PYVENV/bin/segimage2itkimage" ] && command -v python3 >/dev/null 2>&1; then
  echo "installing highdicom, dcmqi and nibabel into $PYVENV" >&2
  python3 -m venv "$PYVENV" >&2 && "$PYVENV/bin/pip" install -q highdicom==0.28.2 dcmqi==1.5.7 nibabel==5.4.2 >&2 \
    || echo "warning: the Python readers could not be installed; their tests skip" >&2
fi
[ -x "$PYVENV/bin/python" ] && export CINESEG_PYTHON="$PYVENV/bin/python"

# nvcc from PyPI (no GPU or driver needed): build.rs then compiles every kernel, and a kernel
# compile error fails the build.
if [ -z "${NVCC:-}" ] && [ -x scripts/install-nvcc.sh ] && [ "${CINESEG_NO_NVCC:-0}" != 1 ]; then
  NVCC=$(scripts/install-nvcc.sh "${NVCC_VENV:-$HOME/.cache/cineseg-nvcc-venv}") && export NVCC
fi

cargo test --release "$@"
