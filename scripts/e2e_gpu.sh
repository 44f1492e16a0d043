#!/usr/bin/env bash
# End to end on the GPU machine (docs/benchmarks.md, issue 12): `sdtp profile end2end` on a
# synthetic shape, then the HF transformers decode peer on the same shape and lengths, in one
# run on one device.
# Usage: scripts/e2e_gpu.sh BIN_DIR OUT_DIR [PRESET] [LENGTHS] [PEER_TIMEOUT_S]
#   LENGTHS default 4096,32768,130944 (130944 + 128 new tokens = 131072, the synthetic context).
#   Each peer length runs under its own timeout (default 420 s) so that one slow or failing
#   length leaves the others' numbers.
# Environment: SDTP=0 skips the sdtp run; PEER_LENGTHS (default LENGTHS; "none" skips the
#   peer) splits the peer over calls of at most 10 minutes each on the device machine.
set -uo pipefail
bin=${1:?BIN_DIR}; out=${2:?OUT_DIR}; preset=${3:-llama2-7b}
lengths=${4:-4096,32768,130944}; peer_timeout=${5:-420}
mkdir -p "$out"
cudnn_dir=$(python3 -c "import os, nvidia.cudnn as c; print(os.path.join(list(c.__path__)[0], 'lib'))" 2>/dev/null)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${cudnn_dir:+:$cudnn_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
if [ "${SDTP:-1}" != 0 ]; then
echo "== sdtp profile end2end, synthetic:$preset, $lengths"
"$bin/sdtp" profile end2end --model "synthetic:$preset" --device cuda --dtype bf16 \
  --length "$lengths" --new-tokens 128 --schedule keep09 --repeats 3 --warmup 1 \
  --no-prune-log --quiet --json "$out/sdtp-e2e-$preset.json" 2>&1 | grep -v '^\s*$' | tee "$out/sdtp-e2e-$preset.txt"
fi
peer_lengths=${PEER_LENGTHS:-$lengths}
[ "$peer_lengths" = none ] && peer_lengths=
for len in ${peer_lengths//,/ }; do
  echo "== HF decode peer, $len"
  timeout "$peer_timeout" python3 scripts/peer_hf_decode.py --preset "$preset" --length "$len" \
    --new-tokens 128 --repeats 3 --json "$out/hf-$preset-$len.json" 2>&1 \
    | grep -v Warning | tail -n 12 | tee "$out/hf-$preset-$len.txt"
done
