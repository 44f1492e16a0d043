#!/usr/bin/env bash
# Runs on the GPU machine (no Rust there): the fused-attention correctness test, then sdtp and
# the HF transformers peer on the same GPU, same model shape, same lengths, one after the other.
# Usage: scripts/gpu_bench.sh BIN_DIR OUT_DIR [PRESET] [LENGTHS]
#   BIN_DIR holds `sdtp` and optionally `flash_attention` (the test binary), both built by
#   scripts/build_cuda.sh here (see docs/gpu.md).
set -uo pipefail
bin=${1:?BIN_DIR}; out=${2:?OUT_DIR}; preset=${3:-llama2-7b}; lengths=${4:-1024,2048,4096,8192,16384,32768}
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
if [ -x "$bin/flash_attention" ]; then
  echo "== fused attention vs f32 reference"
  "$bin/flash_attention" --nocapture 2>&1 | tail -5 | tee "$out/flash_test.txt"
fi
echo "== sdtp profile prefill, synthetic:$preset"
"$bin/sdtp" profile prefill --model "synthetic:$preset" --device cuda --dtype bf16 \
  --length "$lengths" --schedule keep09 --repeats 3 --warmup 1 --skip-too-long --quiet \
  --no-prune-log --json "$out/sdtp.json" --csv "$out/sdtp.csv" 2>&1 | tee "$out/sdtp.txt"
echo "== HF transformers SDPA peer"
python3 scripts/peer_hf_prefill.py --preset "$preset" --length "$lengths" --repeats 3 --warmup 1 \
  --json "$out/peer.json" 2>&1 | grep -v Warning | tee "$out/peer.txt"
