#!/usr/bin/env bash
# Runs on the GPU machine (no Rust there): the CUDA kernel tests, then sdtp and the HF
# transformers peer on the same GPU, same model shape, same lengths, one after the other.
# Usage: scripts/gpu_bench.sh BIN_DIR OUT_DIR [PRESET] [LENGTHS] [OWN_KERNEL_LENGTHS]
#   BIN_DIR holds `sdtp` and optionally `flash_attention` (the test binary), both built by
#   scripts/build_cuda.sh here (see docs/gpu.md). OWN_KERNEL_LENGTHS (default 4096,16384)
#   are also run with SDTP_CUDNN=0, i.e. with sdtp's own attention kernel instead of cuDNN's.
# cuDNN is taken from PyTorch's pip package when the loader does not find libcudnn.so.9.
set -uo pipefail
bin=${1:?BIN_DIR}; out=${2:?OUT_DIR}; preset=${3:-llama2-7b}
lengths=${4:-1024,2048,4096,8192,16384,32768}; own=${5:-4096,16384}
mkdir -p "$out"
cudnn_dir=$(python3 -c "import os, nvidia.cudnn as c; print(os.path.join(list(c.__path__)[0], 'lib'))" 2>/dev/null)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${cudnn_dir:+:$cudnn_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "cuDNN: ${cudnn_dir:-loader default} (torch reports $(python3 -c 'import torch; print(torch.backends.cudnn.version())' 2>/dev/null))"
} | tee "$out/gpu.txt"
if [ -x "$bin/flash_attention" ]; then
  echo "== CUDA kernels vs f32 references"
  "$bin/flash_attention" --nocapture --test-threads 1 2>&1 | grep -E "^test |worst|result|panicked|FAIL" | tee "$out/flash_test.txt"
fi
common=(profile prefill --model "synthetic:$preset" --device cuda --dtype bf16 --schedule keep09
        --repeats 3 --warmup 1 --skip-too-long --no-prune-log)
echo "== sdtp profile prefill, synthetic:$preset"
"$bin/sdtp" "${common[@]}" --length "$lengths" --json "$out/sdtp.json" --csv "$out/sdtp.csv" 2>&1 \
  | grep -v '^\s*$' | tee "$out/sdtp.txt"
if [ -n "$own" ]; then
  echo "== sdtp with its own attention kernel (SDTP_CUDNN=0)"
  SDTP_CUDNN=0 "$bin/sdtp" "${common[@]}" --length "$own" --json "$out/sdtp_own_kernel.json" 2>&1 \
    | grep -v '^\s*$' | tee "$out/sdtp_own_kernel.txt"
fi
echo "== HF transformers SDPA peer"
python3 scripts/peer_hf_prefill.py --preset "$preset" --length "$lengths" --repeats 3 --warmup 1 \
  --json "$out/peer.json" 2>&1 | grep -v Warning | tee "$out/peer.txt"
