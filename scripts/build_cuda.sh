#!/usr/bin/env bash
# Build the CUDA-enabled release binary of sdtp on a machine WITHOUT a GPU and
# WITHOUT a system CUDA toolkit.  See docs/gpu.md.
#
#   scripts/build_cuda.sh            # -> target-cuda/release/sdtp
#
# What it does:
#   1. Installs NVIDIA's CUDA 13.0 compiler pieces from PyPI wheels (nvcc,
#      crt, nvvm/cicc, cudart + headers, CCCL) into a cache folder outside the
#      repo, default ${SDTP_CACHE:-$HOME/.cache/sdtp}/cuda13 (skipped when
#      already there), and lays out a CUDA_HOME (bin/ include/ lib64/ nvvm/).
#   2. Generates link-time stub libraries for the libraries that cudarc links
#      (its `dynamic-linking` feature, chosen by candle): libcuda (driver),
#      libcublas, libcublasLt, libcurand, libnvrtc.  Each stub is a tiny
#      gcc-built .so carrying the real SONAME and one empty function per
#      symbol that cudarc declares.  They only satisfy the linker here; the
#      binary gets no RPATH/RUNPATH, so on the GPU machine the real libraries
#      are found through the normal loader search (ld.so.cache/LD_LIBRARY_PATH).
#   3. Builds `cargo build --release --features cuda --bin sdtp` into
#      CARGO_TARGET_DIR=target-cuda (the CPU build in target/ is untouched),
#      for CUDA_COMPUTE_CAP=90 (H100/H200), and prints path, size and ldd.
#
# Environment knobs:
#   SDTP_CACHE         cache root (default $HOME/.cache/sdtp)
#   SDTP_CUDA_ROOT     install folder (default $SDTP_CACHE/cuda13)
#   CUDA_COMPUTE_CAP   default 90
#   CARGO_TARGET_DIR   default <repo>/target-cuda
#   SDTP_BUILD_JOBS    cargo -j (default: cargo's own default)
#   SDTP_CUDA_TESTS    1: also build the GPU kernel tests (tests/flash_attention.rs) as
#                      target-cuda/release/deps/flash_attention-*
#   SDTP_SIZE_LIMIT_MB binary size limit (default 60); a stripped copy
#                      (sdtp.stripped) is written when the binary exceeds it
#   SDTP_NVCC_COMPRESS fatbin compression for the kernels nvcc compiles into
#                      the binary (default size; none|speed|balance|size).
#                      candle-kernels' GGUF/MoE kernels are ~33 MB of sm_90
#                      machine code uncompressed, ~6 MB with `size`.  Needs
#                      driver >= 580 with CUDA 13 (the GPU machine has 580).
set -euo pipefail

die() { echo "build_cuda.sh: ERROR: $*" >&2; exit 1; }
log() { echo "build_cuda.sh: $*" >&2; }

T0=$(date +%s)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

# ---------------------------------------------------------------- versions --
# CUDA 13.0 (update 2) component versions, matching the GPU machine's
# CUDA 13.0 runtime / driver 580.  nvcc 13.0.x makes cudarc select its
# `cuda-13000` bindings.
NVCC_VER=13.0.88        # nvidia-cuda-nvcc  (nvcc, ptxas, fatbinary, nvlink, cudafe++)
CRT_VER=13.0.88         # nvidia-cuda-crt   (crt/ headers, host_config.h ...)
NVVM_VER=13.0.88        # nvidia-nvvm       (cicc, libnvvm, libdevice)
CUDNN_FRONTEND_VER=1.32.0  # nvidia-cudnn-frontend (header-only graph API; headers only)
CUDNN_VER=9.28.1.4      # nvidia-cudnn-cu13 (cudnn*.h only; the library is dlopen'ed at run time)
NVRTC_VER=13.0.88       # nvidia-cuda-nvrtc (nvrtc.h only, included by the frontend)
CUDART_VER=13.0.96      # nvidia-cuda-runtime (cuda.h, cuda_runtime.h, cuda_fp16/bf16/fp8.h, libcudart.so.13)
CCCL_VER=13.0.85        # nvidia-cuda-cccl  (cub/, thrust/, cuda/std -> include/cccl)
WHEELS=(
  "nvidia-cuda-nvcc==$NVCC_VER"
  "nvidia-cuda-crt==$CRT_VER"
  "nvidia-nvvm==$NVVM_VER"
  "nvidia-cuda-runtime==$CUDART_VER"
  "nvidia-cuda-cccl==$CCCL_VER"
)

# SONAMEs of the libraries cudarc links (checked against nvidia-cublas
# 13.1.0.3, nvidia-curand 10.4.0.35, nvidia-cuda-nvrtc 13.0.88 and the
# 580 driver's libcuda.so.1).  "module:library:soname"
STUBS=(
  "driver:cuda:libcuda.so.1"
  "cublas:cublas:libcublas.so.13"
  "cublaslt:cublasLt:libcublasLt.so.13"
  "curand:curand:libcurand.so.10"
  "nvrtc:nvrtc:libnvrtc.so.13"
)

CACHE=${SDTP_CACHE:-$HOME/.cache/sdtp}
ROOT=${SDTP_CUDA_ROOT:-$CACHE/cuda13}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target-cuda}
SIZE_LIMIT_MB=${SDTP_SIZE_LIMIT_MB:-60}

case "$ROOT" in "$REPO"|"$REPO"/*) die "SDTP_CUDA_ROOT ($ROOT) must be outside the repo";; esac

# ------------------------------------------------------------ prerequisites --
for tool in python3 gcc g++ cargo unzip readelf nm ldd; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH (apt-get install python3 python3-pip build-essential unzip binutils; rustup for cargo)"
done
python3 -m pip --version >/dev/null 2>&1 || die "python3 has no pip (apt-get install python3-pip)"
GCC_MAJOR=$(gcc -dumpversion | cut -d. -f1)
if [ -z "${NVCC_CCBIN:-}" ] && [ "$GCC_MAJOR" -gt 15 ]; then
  die "gcc $GCC_MAJOR is newer than nvcc 13.0 supports; install an older g++ and set NVCC_CCBIN=/path/to/g++-NN"
fi

# ------------------------------------------------- 1. CUDA 13.0 from wheels --
STAMP="$ROOT/.installed"
WANT="${WHEELS[*]}"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$ROOT/wheels/nvidia/cu13/bin/nvcc" ]; then
  log "CUDA wheels already installed in $ROOT/wheels (skipping download)"
else
  log "installing CUDA 13.0 compiler wheels into $ROOT/wheels"
  rm -rf "$ROOT/wheels" "$ROOT/dl" "$STAMP"
  mkdir -p "$ROOT/dl" "$ROOT/wheels"
  python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
      -d "$ROOT/dl" "${WHEELS[@]}" \
    || die "pip download of ${WHEELS[*]} failed (is PyPI reachable?)"
  for w in "$ROOT"/dl/*.whl; do
    # unzip keeps the executable bits of nvcc/ptxas/cicc; all wheels share
    # the nvidia/cu13/ prefix and unpack into one CUDA tree.
    unzip -q -o "$w" -d "$ROOT/wheels" || die "could not unpack $w"
  done
  rm -rf "$ROOT/dl"
  echo "$WANT" > "$STAMP"
fi

W="$ROOT/wheels/nvidia/cu13"
for f in bin/nvcc bin/ptxas bin/fatbinary bin/cudafe++ bin/nvlink nvvm/bin/cicc \
         nvvm/libdevice/libdevice.10.bc include/cuda.h include/cuda_runtime.h \
         include/cuda_fp16.h include/cuda_bf16.h include/cuda_fp8.h include/mma.h \
         include/crt/host_config.h include/cccl/cub/cub.cuh include/cccl/thrust/scan.h \
         lib/libcudart.so.13; do
  [ -e "$W/$f" ] || die "missing $W/$f after installing the wheels (wrong wheel version? delete $ROOT and retry)"
done
chmod u+x "$W"/bin/nvcc "$W"/bin/ptxas "$W"/bin/fatbinary "$W"/bin/cudafe++ "$W"/bin/nvlink "$W"/bin/bin2c "$W"/nvvm/bin/cicc

# CUDA_HOME layout: bin/ include/ nvvm/ point into the wheel tree; lib64/ is
# ours (libcudart.so dev symlink + stubs/); lib -> lib64.
H="$ROOT/home"
mkdir -p "$H/lib64/stubs"
for d in bin include nvvm; do ln -sfn "$W/$d" "$H/$d"; done
ln -sfn lib64 "$H/lib"
for f in "$W"/lib/*; do ln -sfn "$f" "$H/lib64/$(basename "$f")"; done
ln -sfn libcudart.so.13 "$H/lib64/libcudart.so"   # for -lcudart (candle-kernels' libmoe.a)
printf '{ "cuda": { "name": "CUDA SDK", "version": "%s" } }\n' "$NVCC_VER" > "$H/version.json"

# ----------------------------- 1b. cuDNN + cudnn-frontend headers (no libraries) --
# kernels/cudnn_sdpa.cpp compiles against the header-only cudnn-frontend and cuDNN's headers
# (and nvrtc.h, which the frontend includes); cuDNN itself is dlopen'ed at run time.
CUDNN_WHEELS=("nvidia-cudnn-frontend==$CUDNN_FRONTEND_VER" "nvidia-cudnn-cu13==$CUDNN_VER" "nvidia-cuda-nvrtc==$NVRTC_VER")
CI="$ROOT/cudnn/include"
if [ -f "$ROOT/cudnn/.installed" ] && [ "$(cat "$ROOT/cudnn/.installed")" = "${CUDNN_WHEELS[*]}" ]; then
  log "cuDNN headers already in $CI (skipping download)"
else
  log "installing cuDNN and cudnn-frontend headers into $CI"
  rm -rf "$ROOT/cudnn"; mkdir -p "$ROOT/cudnn/dl" "$CI"
  python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
      -d "$ROOT/cudnn/dl" "${CUDNN_WHEELS[@]}" || die "pip download of ${CUDNN_WHEELS[*]} failed"
  # (each wheel has only some of the patterns; unzip exits 11 for the missing ones)
  for w in "$ROOT"/cudnn/dl/*.whl; do unzip -q -o "$w" 'include/*' 'nvidia/*/include/*' -d "$ROOT/cudnn/x" 2>/dev/null || true; done
  cp -r "$ROOT"/cudnn/x/include/. "$CI"/ && cp -r "$ROOT"/cudnn/x/nvidia/cudnn/include/. "$CI"/ \
    && cp "$ROOT"/cudnn/x/nvidia/cu13/include/nvrtc.h "$CI"/ || die "unexpected layout of the cuDNN wheels"
  rm -rf "$ROOT/cudnn/dl" "$ROOT/cudnn/x"
  echo "${CUDNN_WHEELS[*]}" > "$ROOT/cudnn/.installed"
fi
for f in cudnn.h cudnn_frontend.h nvrtc.h; do [ -e "$CI/$f" ] || die "missing $CI/$f"; done
export SDTP_CUDNN_INCLUDE="$CI"

export CUDA_HOME="$H" CUDA_PATH="$H"
# nvcc reads NVCC_APPEND_FLAGS on every call, including the ones made by
# candle-kernels' build script (cudaforge), which offers no flag hook.
COMPRESS=${SDTP_NVCC_COMPRESS:-size}
case "$COMPRESS" in none|speed|balance|size|default) ;; *) die "SDTP_NVCC_COMPRESS must be none|speed|balance|size|default";; esac
export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:+$NVCC_APPEND_FLAGS }--compress-mode=$COMPRESS"
export PATH="$H/bin:$PATH"
unset CUDA_ROOT CUDA_TOOLKIT_ROOT_DIR CUDNN_LIB NVCC 2>/dev/null || true

NVCC_REL=$(nvcc --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
[ "$NVCC_REL" = "13.0" ] || die "nvcc on PATH reports release '$NVCC_REL', expected 13.0 ($(command -v nvcc))"
log "nvcc $(nvcc --version | tail -2 | head -1)"

# Smoke-test the toolchain on a tiny kernel before the long cargo build.
SMOKE=$(mktemp -d)
trap 'rm -rf "$SMOKE"' EXIT
cat > "$SMOKE/t.cu" <<'EOF'
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cub/cub.cuh>
__global__ void k(__nv_bfloat16 *x) { x[threadIdx.x] = __float2bfloat16(2.f); }
EOF
nvcc "-gencode=arch=compute_${CUDA_COMPUTE_CAP},code=sm_${CUDA_COMPUTE_CAP}" -std=c++17 \
     -c -Xcompiler -fPIC -o "$SMOKE/t.o" "$SMOKE/t.cu" ${NVCC_CCBIN:+-ccbin "$NVCC_CCBIN"} \
  || die "nvcc could not compile a test kernel for sm_${CUDA_COMPUTE_CAP} (host compiler: ${NVCC_CCBIN:-g++ $GCC_MAJOR})"

# -------------------------------------------------- 2. link-time stubs --------
# cudarc's symbol declarations: find the cudarc that this Cargo.lock uses.
CUDARC_DIR=$(cargo metadata --format-version 1 --features cuda 2>/dev/null | python3 -c '
import json, os, sys
m = json.load(sys.stdin)
p = [p for p in m["packages"] if p["name"] == "cudarc"]
print(os.path.dirname(p[0]["manifest_path"]) if p else "")') \
  || die "cargo metadata failed"
[ -n "$CUDARC_DIR" ] && [ -d "$CUDARC_DIR/src" ] || die "could not locate the cudarc sources (cargo metadata --features cuda lists no cudarc)"
CUDARC_VER=$(basename "$CUDARC_DIR")
grep -q '"dynamic-linking"' "$(dirname "$CUDARC_DIR")/candle-core-"*/Cargo.toml 2>/dev/null \
  || log "warning: could not confirm that candle-core uses cudarc's dynamic-linking; stubs are made regardless"

STUBDIR="$H/lib64/stubs"
if [ "$(cat "$STUBDIR/.cudarc" 2>/dev/null)" = "$CUDARC_VER" ]; then
  log "stubs for $CUDARC_VER already in $STUBDIR"
else
  log "generating link stubs from $CUDARC_VER declarations into $STUBDIR"
  rm -f "$STUBDIR"/*.so "$STUBDIR"/*.c "$STUBDIR/.cudarc"
  for spec in "${STUBS[@]}"; do
    IFS=: read -r mod lib soname <<<"$spec"
    src="$CUDARC_DIR/src/$mod/sys/mod.rs"
    [ -f "$src" ] || die "cudarc has no $src"
    {
      echo "/* link-time stub for $soname, generated by scripts/build_cuda.sh from $CUDARC_VER/src/$mod/sys/mod.rs."
      echo "   Never load this at run time: the real library comes from the driver / CUDA install. */"
      grep -oP '^pub unsafe fn \K\w+(?=\()' "$src" | sort -u | sed 's/.*/void &(void) {}/'
    } > "$STUBDIR/lib$lib.c"
    n=$(grep -c '^void ' "$STUBDIR/lib$lib.c")
    [ "$n" -gt 0 ] || die "found no function declarations in $src"
    gcc -shared -fPIC -O0 -nostdlib -Wl,-soname,"$soname" -o "$STUBDIR/lib$lib.so" "$STUBDIR/lib$lib.c" \
      || die "gcc failed to build stub lib$lib.so"
    log "  lib$lib.so (SONAME $soname, $n symbols)"
  done
  echo "$CUDARC_VER" > "$STUBDIR/.cudarc"
fi

# ------------------------------------------------------------- 3. build -------
# cargo does not track NVCC_APPEND_FLAGS and cudaforge caches objects by its own
# arguments, so when the flags change, drop candle-kernels' build outputs.
FLAGS_STAMP="$CARGO_TARGET_DIR/.sdtp-nvcc-flags"
if [ -d "$CARGO_TARGET_DIR/release" ] && [ "$(cat "$FLAGS_STAMP" 2>/dev/null)" != "$NVCC_APPEND_FLAGS" ]; then
  log "nvcc flags changed to '$NVCC_APPEND_FLAGS': cleaning candle-kernels in $CARGO_TARGET_DIR"
  cargo clean --release -p candle-kernels || die "cargo clean -p candle-kernels failed"
fi
mkdir -p "$CARGO_TARGET_DIR"
echo "$NVCC_APPEND_FLAGS" > "$FLAGS_STAMP"

log "building: CUDA_HOME=$CUDA_HOME CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP CARGO_TARGET_DIR=$CARGO_TARGET_DIR NVCC_APPEND_FLAGS=$NVCC_APPEND_FLAGS"
T1=$(date +%s)
nice -n 10 cargo build --release --features cuda --bin sdtp ${SDTP_BUILD_JOBS:+-j "$SDTP_BUILD_JOBS"} \
  || die "cargo build --release --features cuda failed (see above)"
if [ "${SDTP_CUDA_TESTS:-0}" = 1 ]; then
  # The GPU kernel tests as a binary to carry (scripts/gpu_stage.sh picks it up).
  nice -n 10 cargo test --release --features cuda --test flash_attention --no-run \
      ${SDTP_BUILD_JOBS:+-j "$SDTP_BUILD_JOBS"} || die "building the CUDA kernel tests failed"
fi
T2=$(date +%s)

BIN="$CARGO_TARGET_DIR/release/sdtp"
[ -x "$BIN" ] || die "build finished but $BIN is missing"

# The stubs must never be found at run time: no RPATH/RUNPATH in the binary.
if readelf -d "$BIN" | grep -qE 'RPATH|RUNPATH'; then
  readelf -d "$BIN" | grep -E 'RPATH|RUNPATH' >&2
  die "$BIN carries an RPATH/RUNPATH; it could shadow the real CUDA libraries"
fi

size_mb() { echo $(( ($(stat -c %s "$1") + 1048575) / 1048576 )); }
echo
echo "binary:   $BIN"
echo "size:     $(stat -c %s "$BIN") bytes ($(size_mb "$BIN") MiB)"
if [ "$(stat -c %s "$BIN")" -ge $((SIZE_LIMIT_MB * 1048576)) ]; then
  cp "$BIN" "$BIN.stripped"
  strip "$BIN.stripped"
  echo "over ${SIZE_LIMIT_MB} MiB: stripped copy $BIN.stripped is $(stat -c %s "$BIN.stripped") bytes ($(size_mb "$BIN.stripped") MiB)"
  [ "$(stat -c %s "$BIN.stripped")" -lt $((SIZE_LIMIT_MB * 1048576)) ] \
    || echo "WARNING: even stripped, the binary is over ${SIZE_LIMIT_MB} MiB" >&2
else
  rm -f "$BIN.stripped"   # a stale copy from an earlier, larger build
fi
echo "NEEDED:   $(readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
echo "ldd (on this GPU-less machine the CUDA libraries show as 'not found'; that is expected):"
ldd "$BIN" || true
echo "build time: $((T2 - T1)) s for cargo, $((T2 - T0)) s in all"
