#!/usr/bin/env bash
# Cross-builds cineseg for aarch64 (a Jetson Orin's CPU) and runs the CPU layer tests under
# qemu-user: the property tests of every layer against the f64 references, on the NEON build
# (the `generic` and `neon` paths of an aarch64 binary), and the bf16 references (the scalar
# kernel; AVX512-BF16 does not exist there). Installs what it needs on Debian when run as root:
# gcc/g++-aarch64-linux-gnu, qemu-user, the rustup target.
# Usage: scripts/test-aarch64.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu

need=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu)
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  else
    echo "skipped: aarch64 layer tests need ${need[*]} (apt-get install ${need[*]})" >&2
    exit 0
  fi
fi
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target" >&2
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
# tests/layers.rs re-runs itself once per CPU path; the child needs the emulator too.
export CINESEG_TEST_RUNNER="$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
# A separate target directory keeps the host build's artefacts untouched.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/cross"
# The layer property tests, then the library's own tests of the network code.
cargo test --release --target "$target" --no-default-features --test layers --test layers_bf16 "$@"
cargo test --release --target "$target" --no-default-features --lib "$@" -- nn::
# The CUDA backend for a Jetson Orin (CUDA 12.6) compiles for aarch64.
cargo check --release --target "$target" --no-default-features --features cuda-jetson --lib
