#!/usr/bin/env bash
# Sweep sdtp over prompt lengths × pruning schedules and keep the results in results/.
#
#   scripts/run_inference.sh profile end2end [extra `sdtp profile` args]
#   scripts/run_inference.sh profile prefill [extra `sdtp profile` args]
#   scripts/run_inference.sh generate [extra `sdtp generate` args]
#
# profile: one `sdtp profile` run over every length and schedule (the unpruned baseline
#   always runs too), writing results/<mode>-<model>-<date>.{json,csv,txt} and an SVG plot of
#   prefill time and speedup against length (`sdtp profile plot`). Lengths above the model's
#   context are skipped with a message.
# generate: `sdtp generate` once per length and schedule (baseline "none" included) on a
#   prompt file of that many tokens of the shipped text; the timings it prints are collected
#   into results/generate-<model>-<date>.{json,csv}, the generated texts into a folder beside.
#
# Environment:
#   LENGTHS     prompt lengths (default "1024 2048 4096 8192 16384 32768")
#   SCHEDULES   schedules compared with the baseline (default "keep09 keep08 keep07")
#   NEW_TOKENS  tokens generated in generate mode (default 128)
#   RESULTS     output folder (default results)
#   SDTP        the sdtp binary (default target/release/sdtp, built if needed)
# Pass --length/--schedule in the extra args to override LENGTHS/SCHEDULES in profile mode.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

cd "$(dirname "$0")/.."
LENGTHS=${LENGTHS:-"1024 2048 4096 8192 16384 32768"}
SCHEDULES=${SCHEDULES:-"keep09 keep08 keep07"}
NEW_TOKENS=${NEW_TOKENS:-128}
RESULTS=${RESULTS:-results}
SDTP=${SDTP:-target/release/sdtp}

[[ $# -ge 1 ]] || usage 2
command=$1
shift
case "$command" in
    -h | --help) usage 0 ;;
    profile)
        [[ $# -ge 1 ]] || { echo "profile needs a mode: end2end or prefill" >&2; exit 2; }
        mode=$1
        shift
        [[ $mode == end2end || $mode == prefill ]] ||
            { echo "unknown profile mode \"$mode\": use end2end or prefill" >&2; exit 2; }
        ;;
    generate) mode=generate ;;
    *) echo "unknown command \"$command\": use profile end2end|prefill or generate" >&2; usage 2 ;;
esac

if [[ $SDTP == target/release/sdtp ]]; then
    cargo build --release --quiet
fi
[[ -x $SDTP ]] || { echo "no sdtp binary at $SDTP" >&2; exit 1; }

# A file-name-safe model name from --model (default: the SmolLM2 GGUF).
model=SmolLM2-135M-Instruct
has_length=false
has_schedule=false
model_args=() # what `sdtp profile prompt` takes of the extra args
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --model) model=${args[i + 1]:-$model} ;;
        --model=*) model=${args[i]#--model=} ;;
        --length | --length=*) has_length=true ;;
        --schedule | --schedule=*) has_schedule=true ;;
    esac
    case "${args[i]}" in
        --model | --device | --dtype | --seed) model_args+=("${args[i]}" "${args[i + 1]:-}") ;;
        --model=* | --device=* | --dtype=* | --seed=*) model_args+=("${args[i]}") ;;
    esac
done
model=$(basename "$model")
model=${model%.gguf}
model=${model//[^A-Za-z0-9._-]/-}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS"
out="$RESULTS/$mode-$model-$stamp"

if [[ $mode != generate ]]; then
    sweep=()
    $has_length || sweep+=(--length "$(tr -s ' ' ',' <<<"$LENGTHS")")
    $has_schedule || sweep+=(--schedule "$(tr -s ' ' ',' <<<"$SCHEDULES")")
    "$SDTP" profile "$mode" "${sweep[@]}" --skip-too-long \
        --json "$out.json" --csv "$out.csv" "$@" | tee "$out.txt"
    "$SDTP" profile plot --input "$out.json" --output "$out.svg"
    echo "results: $out.json $out.csv $out.txt $out.svg"
    exit 0
fi

# generate mode
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
date_iso=$(date -u +%Y-%m-%dT%H:%M:%SZ)
mkdir -p "$out"
csv="$out.csv"
echo "length,schedule,prompt_tokens,final_tokens,prefill_ms,prefill_tok_s,decode_tokens,decode_ms,decode_tok_s,model,git_commit,date" >"$csv"
rows=()
for length in $LENGTHS; do
    prompt="$out/prompt-$length.txt"
    "$SDTP" profile prompt --length "$length" "${model_args[@]}" >"$prompt" 2>"$out/prompt-$length.log" || {
        echo "skipped: length $length: $(grep -m1 '^error' "$out/prompt-$length.log" || echo 'no prompt')" >&2
        continue
    }
    for schedule in none $SCHEDULES; do
        text="$out/generate-$length-$schedule.txt"
        log="$out/generate-$length-$schedule.log"
        if ! "$SDTP" generate --prompt-file "$prompt" --schedule "$schedule" \
            --max-new-tokens "$NEW_TOKENS" "$@" >"$text" 2>"$log"; then
            if grep -q "longer than the model's context" "$log"; then
                echo "skipped: length $length is above the model's context" >&2
                continue 2
            fi
            echo "sdtp generate failed at length $length, schedule $schedule:" >&2
            cat "$log" >&2
            exit 1
        fi
        # "prefill: N tokens (K reached the last layer, schedule S) in X ms (Y tok/s)"
        # "decode: n tokens in X ms (Y tok/s)..."
        ptok="" dtok=""
        read -r ptok final pms ptps < <(sed -nE \
            's/^prefill: ([0-9]+) tokens \(([0-9]+) reached.* in ([0-9.]+) ms \(([0-9.]+) tok\/s\).*/\1 \2 \3 \4/p' "$log") || true
        read -r dtok dms dtps < <(sed -nE \
            's/^decode: ([0-9]+) tokens in ([0-9.]+) ms \(([0-9.]+) tok\/s\).*/\1 \2 \3/p' "$log") || true
        if [[ -z ${ptok:-} || -z ${dtok:-} ]]; then
            echo "cannot read the timings sdtp generate printed (see $log)" >&2
            exit 1
        fi
        echo "$length,$schedule,$ptok,$final,$pms,$ptps,$dtok,$dms,$dtps,$model,$commit,$date_iso" >>"$csv"
        rows+=("{\"length\": $length, \"schedule\": \"$schedule\", \"prompt_tokens\": $ptok, \"final_tokens\": $final, \"prefill_ms\": $pms, \"prefill_tok_s\": $ptps, \"decode_tokens\": $dtok, \"decode_ms\": $dms, \"decode_tok_s\": $dtps}")
        echo "length $length, $schedule: prefill $pms ms, $final of $ptok tokens kept; decode $dtok tokens at $dtps tok/s" >&2
    done
done
{
    printf '{\n  "command": "generate",\n  "model": "%s",\n  "git_commit": "%s",\n  "date": "%s",\n  "new_tokens": %s,\n  "results": [\n' \
        "$model" "$commit" "$date_iso" "$NEW_TOKENS"
    for ((i = 0; i < ${#rows[@]}; i++)); do
        sep=","
        ((i == ${#rows[@]} - 1)) && sep=""
        printf '    %s%s\n' "${rows[i]}" "$sep"
    done
    printf '  ]\n}\n'
} >"$out.json.tmp"
mv "$out.json.tmp" "$out.json"
echo "results: $out.json $csv (texts and logs in $out/)"
