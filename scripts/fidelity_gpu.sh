#!/usr/bin/env bash
# Retrieval fidelity on the GPU machine (docs/fidelity.md): passkey at scale, the RULER-style
# suite and the agreement prompts on the real model, unpruned against each schedule × scorer.
# Usage: scripts/fidelity_gpu.sh BIN_DIR MODEL OUT_DIR
# Environment (defaults in brackets):
#   SEED [7]             report seed; the defaults were chosen on seed 1 (the dev seed)
#   SCHEDULES [keep09,keep08,keep07]   presets or TOML files, comma list
#   SCORERS []           comma list (attention, learned, norm, random); empty: each schedule's own
#   PASSKEY_LENGTHS [1024,2048,4096,8000]   PASSKEY_TRIALS [10]   DEPTHS [0,0.25,0.5,0.75,1]
#   RULER_LENGTHS [1024,2048,4096,8000]     RULER_SAMPLES [10]    RULER_TASKS [] (all)
#   RULER_NEW_TOKENS []  cap on generated tokens (empty: RULER's per-task numbers)
#   AGREEMENT_CONTINUATION [32]   greedy tokens compared per agreement prompt
#   STEPS [passkey,ruler,agreement]   which parts to run
#   WEIGHTS [auto]       --weights: auto (the GGUF's blocks), quantized or dequantized
# cuDNN is taken from PyTorch's pip package when the loader does not find libcudnn.so.9.
set -uo pipefail
bin=${1:?BIN_DIR}; model=${2:?MODEL}; out=${3:?OUT_DIR}
mkdir -p "$out"
cudnn_dir=$(python3 -c "import os, nvidia.cudnn as c; print(os.path.join(list(c.__path__)[0], 'lib'))" 2>/dev/null)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${cudnn_dir:+:$cudnn_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
seed=${SEED:-7}; steps=${STEPS:-passkey,ruler,agreement}
contenders=(--schedule "${SCHEDULES:-keep09,keep08,keep07}")
[ -n "${SCORERS:-}" ] && contenders+=(--scorer "$SCORERS")
common=(--model "$model" --device cuda --dtype bf16 --weights "${WEIGHTS:-auto}" --seed "$seed" --quiet)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
run() { # name, then the sdtp arguments
  local name=$1; shift
  echo "== $name"
  local t0=$SECONDS
  "$bin/sdtp" "$@" --json "$out/$name.json" > "$out/$name.md" 2> "$out/$name.err"
  echo "rc=$? in $((SECONDS - t0)) s"; tail -n 3 "$out/$name.err"
}
case ",$steps," in *,passkey,*)
  run passkey eval passkey "${common[@]}" "${contenders[@]}" \
    --length "${PASSKEY_LENGTHS:-1024,2048,4096,8000}" --depth "${DEPTHS:-0,0.25,0.5,0.75,1}" \
    --trials "${PASSKEY_TRIALS:-10}" ;;
esac
case ",$steps," in *,ruler,*)
  extra=()
  [ -n "${RULER_TASKS:-}" ] && extra+=(--tasks "$RULER_TASKS")
  [ -n "${RULER_NEW_TOKENS:-}" ] && extra+=(--new-tokens "$RULER_NEW_TOKENS")
  run ruler eval ruler "${common[@]}" "${contenders[@]}" \
    --length "${RULER_LENGTHS:-1024,2048,4096,8000}" --samples "${RULER_SAMPLES:-10}" \
    --plot "$out/ruler.svg" "${extra[@]}" ;;
esac
case ",$steps," in *,agreement,*)
  run agreement eval agreement "${common[@]}" "${contenders[@]}" \
    --continuation-tokens "${AGREEMENT_CONTINUATION:-32}" ;;
esac
