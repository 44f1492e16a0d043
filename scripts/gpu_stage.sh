#!/usr/bin/env bash
# Packs the CUDA build and the default model for the GPU machine, whose calls carry at most
# 64 MiB each (docs/fidelity.md, "Running on the GPU"). Writes, under gpu/ (gitignored):
#   gpu/call1/  sdtp.gz and the model's first part
#   gpu/call2/  the model's other parts and SHA256SUMS
#   gpu/call3/  flash_attention.gz, the GPU kernel tests, when they were built
# Each call, sent while the machine is still warm, runs `scripts/gpu_unstage.sh DIR gpu/callN`
# there: it copies the call's files to DIR (outside the repo copy), unzips the binaries and,
# once every part is there, joins the model and checks its sha256.
# Usage: scripts/gpu_stage.sh [CUDA_TARGET_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-target-cuda/release}
model="${SDTP_CACHE:-$HOME/.cache/sdtp}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -x "$target/sdtp" ] || { echo "error: no $target/sdtp; run scripts/build_cuda.sh first" >&2; exit 1; }
[ -f "$model" ] || { echo "error: no $model; run scripts/fetch_model.sh first" >&2; exit 1; }
rm -rf gpu/call1 gpu/call2 gpu/call3
mkdir -p gpu/call1 gpu/call2
gzip -1 -c "$target/sdtp" > gpu/call1/sdtp.gz
test_bin=$(ls -t "$target"/deps/flash_attention-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
if [ -n "$test_bin" ]; then
  mkdir -p gpu/call3
  gzip -1 -c "$test_bin" > gpu/call3/flash_attention.gz
fi
# 38 MiB parts: the gzipped binary (~20 MB), the first part and the repository (~6 MB)
# stay under one call's 64 MiB; with 40 MiB parts call 1 came to ~66 MiB.
split -b 38m -d "$model" gpu/model.part-
mv gpu/model.part-00 gpu/call1/
mv gpu/model.part-* gpu/call2/
(cd "$(dirname "$model")" && sha256sum "$(basename "$model")") > gpu/call2/SHA256SUMS
du -sh gpu/call*
for call in gpu/call*; do
  size=$(du -sb "$call" | cut -f1)
  [ "$size" -le $((58 * 1024 * 1024)) ] || echo "warning: $call is $((size / 1024 / 1024)) MiB; with the repository it may pass the 64 MiB a call carries" >&2
done
