#!/usr/bin/env bash
# ci.sh - everything the C part of CI needs (spec clauses 12 and 16). Exits non-zero on any failure.
#   1. installs the aarch64 cross compiler and qemu-user with apt-get when they are missing
#   2. native build + C tests + pcn_predict        (make)
#   3. C tests under ASan and UBSan                (make sanitize)
#   4. the random-input harness under ASan + UBSan (make fuzz, PCN_FUZZ_SECONDS, default 60)
#   5. aarch64 cross build, C tests under qemu-aarch64, static pcn_predict and its size
#   6. golden vectors and whole-model cases from the NumPy reference, checked natively and under
#      qemu-aarch64; pcn_predict on a golden input (raw float32) and on a PPM image, and its
#      one-line refusal of a bad file
# PYTHON selects the interpreter that has parcnetv2 installed (default: python, else python3).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if command -v python >/dev/null 2>&1; then PYTHON=python; else PYTHON=python3; fi
fi
JOBS="${JOBS:-2}"
FUZZ_SECONDS="${PCN_FUZZ_SECONDS:-60}"
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
step "native build, C tests, pcn_predict"
make -C "$HERE" -j"$JOBS" lib
make -C "$HERE" all

step "AddressSanitizer and UndefinedBehaviorSanitizer"
make -C "$HERE" -j"$JOBS" asan
make -C "$HERE" -j"$JOBS" ubsan

step "random-input harness under ASan + UBSan for ${FUZZ_SECONDS} s"
make -C "$HERE" fuzz FUZZ_SECONDS="$FUZZ_SECONDS"

step "aarch64 cross build, tests under qemu-aarch64, static pcn_predict"
make -C "$HERE" -j"$JOBS" cross-aarch64

step "golden vectors and whole-model cases (reference: $PYTHON)"
VEC="$(mktemp -d)"
trap 'rm -rf "$VEC"' EXIT
"$PYTHON" -m parcnetv2.cext.golden --out "$VEC"
make -C "$HERE" selfcheck VECTORS="$VEC"
make -C "$HERE" selfcheck-aarch64 VECTORS="$VEC"

step "pcn_predict: raw float32, PPM, a bad file"
"$HERE/build/pcn_predict" --threads 2 "$VEC/model_xt_224.safetensors" "$VEC/model_xt_224.input.f32"
"$PYTHON" - "$VEC/image.ppm" <<'EOF'
import sys
import numpy as np
h, w = 300, 451
rgb = (np.add.outer(np.arange(h), np.arange(w))[..., None] * np.array([1, 2, 3]) % 256).astype(np.uint8)
with open(sys.argv[1], "wb") as fh:
    fh.write(b"P6\n# ci\n%d %d\n255\n" % (w, h) + rgb.tobytes())
EOF
"$HERE/build/pcn_predict" "$VEC/model_xt_224.safetensors" "$VEC/image.ppm" --top 3
qemu-aarch64 "$HERE/build/aarch64-static/pcn_predict" "$VEC/model_xt_64.safetensors" "$VEC/model_xt_64.input.f32" --top 3
printf 'not a weights file' > "$VEC/bad.safetensors"
rc=0
"$HERE/build/pcn_predict" "$VEC/bad.safetensors" "$VEC/image.ppm" 2> "$VEC/err.txt" || rc=$?
if [ "$rc" -ne 2 ] || [ "$(wc -l < "$VEC/err.txt")" -ne 1 ]; then
    echo "pcn_predict on a bad weights file: exit $rc, stderr:"; cat "$VEC/err.txt"; exit 1
fi
echo "bad weights file refused: $(cat "$VEC/err.txt")"

step "all passed in $((SECONDS - start)) s"
