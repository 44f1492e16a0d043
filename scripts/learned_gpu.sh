#!/usr/bin/env bash
# Labels and trains the question-aware learned scorer on the GPU machine (docs/training.md,
# "The question-aware predictor"): a saliency dataset of the shipped prose (1024-token
# windows, π̂ from the loss of each window's protected tail) and RULER-style samples of the
# training families (π̂ from the loss of the answer tokens), then `sdtp train-predictor`.
# The held-out families (niah_multikey_1..3 and vt by default) are never labelled; measure
# on them with scripts/fidelity_gpu.sh and SCHEDULES=keep09,OUT_DIR/learned-qa.toml.
# Usage: scripts/learned_gpu.sh BIN_DIR MODEL DATA_DIR OUT_DIR
# Environment (defaults in brackets):
#   TRAIN_TASKS [niah_single_1,niah_single_2,niah_single_3,niah_multivalue,niah_multiquery,cwe,fwe]
#   RULER_LENGTHS [1024,2048]  RULER_SAMPLES [20] per task and length  WINDOWS [64] prose windows
#   RULER_SEED [101]  (the reports use seeds 1 and 7)  EPOCHS [15]  PATIENCE [4]
#   INPUTS [hidden+attention]  TARGET [abs]
set -uo pipefail
bin=${1:?BIN_DIR}; model=${2:?MODEL}; data=${3:?DATA_DIR}; out=${4:?OUT_DIR}
mkdir -p "$out"
cudnn_dir=$(python3 -c "import os, nvidia.cudnn as c; print(os.path.join(list(c.__path__)[0], 'lib'))" 2>/dev/null)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${cudnn_dir:+:$cudnn_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
t0=$SECONDS
# f32: the labels are gradients, and bf16 would round them coarsely.
"$bin/sdtp" saliency --model "$model" --device cuda --dtype f32 --seq-len 1024 \
  --max-sequences "${WINDOWS:-64}" \
  --ruler-tasks "${TRAIN_TASKS:-niah_single_1,niah_single_2,niah_single_3,niah_multivalue,niah_multiquery,cwe,fwe}" \
  --ruler-length "${RULER_LENGTHS:-1024,2048}" --ruler-samples "${RULER_SAMPLES:-20}" \
  --ruler-seed "${RULER_SEED:-101}" --out "$data" > "$out/saliency.txt" 2> "$out/saliency.err"
echo "saliency rc=$? in $((SECONDS - t0)) s"; tail -n 2 "$out/saliency.txt" "$out/saliency.err"
t1=$SECONDS
name=learned-${INPUTS:-hidden+attention}
name=${name//+/-}
"$bin/sdtp" train-predictor --model "$model" --device cuda --dataset "$data" \
  --out "$out/$name.safetensors" --inputs "${INPUTS:-hidden+attention}" --target "${TARGET:-abs}" \
  --epochs "${EPOCHS:-15}" --patience "${PATIENCE:-4}" > "$out/$name.md" 2> "$out/$name.err"
echo "train-predictor rc=$? in $((SECONDS - t1)) s"; tail -n 5 "$out/$name.err"
