#!/usr/bin/env bash
# Packs the CUDA build and the default model for the GPU machine, whose calls carry at most
# 64 MiB each (docs/fidelity.md, "Running on the GPU"). Writes, under gpu/ (gitignored):
#   gpu/call1/  sdtp.gz (+ flash_attention.gz when built) and the model's first part
#   gpu/call2/  the model's other parts and SHA256SUMS
# Call 1 copies gpu/call1 to a folder outside the repo copy; call 2, sent while the machine
# is still warm, adds gpu/call2 and runs scripts/gpu_unstage.sh there, which rebuilds and
# checks everything. Usage: scripts/gpu_stage.sh [CUDA_TARGET_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-target-cuda/release}
model="${SDTP_CACHE:-$HOME/.cache/sdtp}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -x "$target/sdtp" ] || { echo "error: no $target/sdtp; run scripts/build_cuda.sh first" >&2; exit 1; }
[ -f "$model" ] || { echo "error: no $model; run scripts/fetch_model.sh first" >&2; exit 1; }
rm -rf gpu/call1 gpu/call2
mkdir -p gpu/call1 gpu/call2
gzip -1 -c "$target/sdtp" > gpu/call1/sdtp.gz
test_bin=$(ls -t "$target"/deps/flash_attention-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
[ -n "$test_bin" ] && gzip -1 -c "$test_bin" > gpu/call1/flash_attention.gz
# 40 MiB parts: the binary and the first part stay under one call's limit with the repo.
split -b 40m -d "$model" gpu/model.part-
mv gpu/model.part-00 gpu/call1/
mv gpu/model.part-* gpu/call2/
(cd "$(dirname "$model")" && sha256sum "$(basename "$model")") > gpu/call2/SHA256SUMS
du -sh gpu/call1 gpu/call2
