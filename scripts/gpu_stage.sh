#!/usr/bin/env bash
# Packs the CUDA build and the default model for the GPU machine, whose calls carry at most
# 64 MiB each (docs/fidelity.md, "Running on the GPU"). Writes, under gpu/ (gitignored):
#   gpu/call1/  sdtp.gz and the model's first part
#   gpu/call2/  the model's next part (and so on), the last with SHA256SUMS
#   gpu/callN/  flash_attention.gz, the GPU kernel tests, when they were built
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
rm -rf gpu/call*
mkdir -p gpu/call1
gzip -1 -c "$target/sdtp" > gpu/call1/sdtp.gz
# A call carries the repository copy (tracked and untracked files git does not ignore, and
# ../shared) with its files: each call's model part is sized to what is left of 64 MiB.
repo=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
shared=$(du -sb ../shared 2>/dev/null | cut -f1 || echo 0)
room=$(( 64 * 1024 * 1024 - 512 * 1024 - repo - ${shared:-0} ))
bin_size=$(stat -c %s gpu/call1/sdtp.gz)
model_size=$(stat -c %s "$model")
(( room - bin_size > 1024 * 1024 )) || { echo "error: the repository copy (${repo} bytes) leaves no room for the model in a call" >&2; exit 1; }
call=1; offset=0; take=$(( room - bin_size ))
while (( offset < model_size )); do
  mkdir -p "gpu/call$call"
  part=$(printf 'gpu/call%d/model.part-%02d' "$call" "$call")
  dd if="$model" of="$part" bs=1M iflag=skip_bytes,count_bytes skip="$offset" count="$take" status=none
  offset=$(( offset + $(stat -c %s "$part") ))
  call=$(( call + 1 )); take=$room
done
last=$(( call - 1 ))
(cd "$(dirname "$model")" && sha256sum "$(basename "$model")") > "gpu/call$last/SHA256SUMS"
test_bin=$(ls -t "$target"/deps/flash_attention-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
if [ -n "$test_bin" ]; then
  mkdir -p "gpu/call$call"
  gzip -1 -c "$test_bin" > "gpu/call$call/flash_attention.gz"
fi
du -sh gpu/call*
echo "the model is whole after gpu/call$last"
