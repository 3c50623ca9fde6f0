#!/usr/bin/env bash
# ci.sh - everything the C part of CI needs (spec clause 12). Exits non-zero on any failure.
#   1. installs the aarch64 cross compiler and qemu-user with apt-get when they are missing
#   2. native build + C tests           (make)
#   3. C tests under ASan and UBSan     (make sanitize)
#   4. aarch64 cross build, C tests under qemu-aarch64 (make cross-aarch64)
#   5. golden vectors from the NumPy reference, checked natively and under qemu-aarch64
# PYTHON selects the interpreter that has parcnetv2 installed (default: python, else python3).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if command -v python >/dev/null 2>&1; then PYTHON=python; else PYTHON=python3; fi
fi
JOBS="${JOBS:-2}"
step() { printf '\n=== cext ci: %s ===\n' "$*"; }

missing=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
if [ "${#missing[@]}" -gt 0 ]; then
    step "apt-get install ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

start=$SECONDS
step "native build and C tests"
make -C "$HERE" -j"$JOBS" lib
make -C "$HERE" test

step "AddressSanitizer and UndefinedBehaviorSanitizer"
make -C "$HERE" -j"$JOBS" asan
make -C "$HERE" -j"$JOBS" ubsan

step "aarch64 cross build, tests under qemu-aarch64"
make -C "$HERE" -j"$JOBS" cross-aarch64

step "golden vectors (reference: $PYTHON)"
VEC="$(mktemp -d)"
trap 'rm -rf "$VEC"' EXIT
"$PYTHON" -m parcnetv2.cext.golden --out "$VEC"
make -C "$HERE" selfcheck VECTORS="$VEC"
make -C "$HERE" selfcheck-aarch64 VECTORS="$VEC"

step "all passed in $((SECONDS - start)) s"
