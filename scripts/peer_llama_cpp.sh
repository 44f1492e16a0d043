#!/usr/bin/env bash
# CPU peer benchmark: sdtp against llama.cpp's llama-bench on the same GGUF file and threads.
#
# Builds llama-bench and llama-quantize from the llama.cpp vendored in the llama-cpp-python
# sdist on PyPI (the only site this needs), runs llama-bench (prefill pp<L> for each length,
# decode tg<N> at depth D) and `sdtp profile end2end` (baseline and keep09), and writes a
# side-by-side table. Everything downloaded or built lives under
# ${SDTP_CACHE:-$HOME/.cache/sdtp}/llama.cpp/ and each step is done once (a stamp per step).
#
# Outputs in --out (all written through a temporary folder, so a failed run leaves none):
#   llama_bench_pp.json, llama_bench_tg.json   raw `llama-bench -o json`
#   sdtp.json                                  raw `sdtp profile end2end --json`
#   peer.json, peer.md                         the comparison (scripts/peer_llama_cpp.py)
#   *.log                                      stderr of each tool
set -euo pipefail

PROG=peer_llama_cpp
LLAMA_CPP_PYTHON_VERSION=0.3.36
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE=${SDTP_CACHE:-$HOME/.cache/sdtp}
LDIR=$CACHE/llama.cpp

usage() {
    cat <<EOF
Usage: scripts/peer_llama_cpp.sh [OPTIONS]

Benchmark sdtp against llama.cpp (llama-bench) on one GGUF file, CPU only, same threads.

Options:
  --model PATH         GGUF file (default: \$SDTP_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf,
                       \$SDTP_CACHE defaulting to ~/.cache/sdtp)
  --threads N          threads for both tools (default: nproc = $(nproc))
  --lengths L1,L2,...  prompt lengths for the prefill rows (default: 1024,4096)
  --new-tokens N       tokens decoded (llama-bench tg<N>, sdtp --new-tokens) (default: 64)
  --decode-depth D     prompt length the decode row is measured after (default: 1024;
                       sdtp also runs length D when it is not among --lengths)
  --repeats R          measured repetitions per test, both tools (default: 3)
  --sdtp PATH          sdtp binary (default: target/release/sdtp of this repository)
  --out DIR            output folder (default: results/peer_llama_cpp of this repository)
  --requant TYPE       first requantize the model with llama-quantize --allow-requantize to
                       \$SDTP_CACHE/models/<stem>.<TYPE>.gguf (e.g. q8_0) and benchmark that file
  --build-jobs N       parallel jobs for the llama.cpp build (default: 2; runs under nice -n 10)
  --skip-sdtp          do not run sdtp (reuse --out/sdtp.json if present)
  --skip-llama         do not run llama-bench (reuse --out/llama_bench_*.json if present)
  -h, --help           this text

Environment: SDTP_CACHE (cache root), CMAKE (a cmake binary to use).
Exit status: 0 done, 1 a step failed (one line on stderr says which), 2 bad arguments.
EOF
}

log() { printf '[%s %s] %s\n' "$PROG" "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
bad_arg() { printf '%s: error: %s (see --help)\n' "$PROG" "$*" >&2; exit 2; }
is_pos_int() { [[ $1 =~ ^[0-9]+$ ]] && (( 10#$1 > 0 )); }
# Prints the last lines of a log to stderr, then fails with one line.
die_log() {
    local what=$1 logfile=$2
    # Logs of the temporary output folder would vanish with it: keep a copy in the cache.
    if [[ -n ${WORK:-} && $logfile == "$WORK"/* && -f $logfile ]]; then
        mkdir -p "$LDIR/logs" && cp "$logfile" "$LDIR/logs/" && logfile=$LDIR/logs/$(basename "$logfile")
    fi
    if [[ -s $logfile ]]; then
        printf -- '--- last lines of %s ---\n' "$logfile" >&2
        tail -n 15 "$logfile" >&2 || true
        printf -- '---\n' >&2
    fi
    die "$what failed (full log: $logfile)"
}

# ---------------------------------------------------------------- arguments
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
THREADS=$(nproc)
LENGTHS=1024,4096
NEW_TOKENS=64
DECODE_DEPTH=1024
REPEATS=3
SDTP=$REPO_ROOT/target/release/sdtp
OUT=$REPO_ROOT/results/peer_llama_cpp
REQUANT=
BUILD_JOBS=2
SKIP_SDTP=0
SKIP_LLAMA=0

need_value() { [[ $# -ge 2 && -n $2 ]] || bad_arg "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --model) need_value "$@"; MODEL=$2; shift 2 ;;
        --threads) need_value "$@"; THREADS=$2; shift 2 ;;
        --lengths|--length) need_value "$@"; LENGTHS=$2; shift 2 ;;
        --new-tokens) need_value "$@"; NEW_TOKENS=$2; shift 2 ;;
        --decode-depth) need_value "$@"; DECODE_DEPTH=$2; shift 2 ;;
        --repeats) need_value "$@"; REPEATS=$2; shift 2 ;;
        --sdtp) need_value "$@"; SDTP=$2; shift 2 ;;
        --out) need_value "$@"; OUT=$2; shift 2 ;;
        --requant) need_value "$@"; REQUANT=$2; shift 2 ;;
        --build-jobs) need_value "$@"; BUILD_JOBS=$2; shift 2 ;;
        --skip-sdtp) SKIP_SDTP=1; shift ;;
        --skip-llama) SKIP_LLAMA=1; shift ;;
        --*=*) bad_arg "write '${1%%=*} ${1#*=}' (a space, not '=')" ;;
        *) bad_arg "unknown argument '$1'" ;;
    esac
done

is_pos_int "$THREADS" || bad_arg "--threads must be a positive integer, not '$THREADS'"
is_pos_int "$NEW_TOKENS" || bad_arg "--new-tokens must be a positive integer, not '$NEW_TOKENS'"
is_pos_int "$DECODE_DEPTH" || bad_arg "--decode-depth must be a positive integer, not '$DECODE_DEPTH'"
is_pos_int "$REPEATS" || bad_arg "--repeats must be a positive integer, not '$REPEATS'"
is_pos_int "$BUILD_JOBS" || bad_arg "--build-jobs must be a positive integer, not '$BUILD_JOBS'"
[[ $LENGTHS =~ ^[0-9]+(,[0-9]+)*$ ]] || bad_arg "--lengths must be a comma list of positive integers, not '$LENGTHS'"
IFS=, read -r -a LENGTH_LIST <<<"$LENGTHS"
for l in "${LENGTH_LIST[@]}"; do
    is_pos_int "$l" || bad_arg "--lengths: '$l' is not a positive integer"
done
LENGTH_LIST=("${LENGTH_LIST[@]/#/10#}")  # no octal: 0100 is 100
for i in "${!LENGTH_LIST[@]}"; do LENGTH_LIST[i]=$(( LENGTH_LIST[i] )); done
LENGTHS=$(IFS=,; echo "${LENGTH_LIST[*]}")
THREADS=$((10#$THREADS)); NEW_TOKENS=$((10#$NEW_TOKENS)); DECODE_DEPTH=$((10#$DECODE_DEPTH))
REPEATS=$((10#$REPEATS)); BUILD_JOBS=$((10#$BUILD_JOBS))
[[ $(printf '%s\n' "${LENGTH_LIST[@]}" | sort -n | uniq -d) == "" ]] || bad_arg "--lengths has a repeated length"
[[ -f $MODEL && -r $MODEL ]] || bad_arg "--model: no readable file '$MODEL' (scripts/fetch_model.sh fetches the default)"
[[ $MODEL == *.gguf ]] || bad_arg "--model must be a .gguf file, not '$MODEL'"
if [[ -n $REQUANT ]]; then
    [[ $REQUANT =~ ^[A-Za-z][A-Za-z0-9_]*$ ]] || bad_arg "--requant: '$REQUANT' is not a quantization type name (e.g. q8_0)"
fi
if [[ $SKIP_SDTP == 0 ]]; then
    [[ -x $SDTP && -f $SDTP ]] || bad_arg "--sdtp: no executable '$SDTP' (cargo build --release makes it)"
fi
[[ -n $OUT && $OUT != / ]] || bad_arg "--out must name a folder"
[[ ! -e $OUT || -d $OUT ]] || bad_arg "--out: '$OUT' exists and is not a folder"
command -v python3 >/dev/null || die "python3 not found"
LONGEST=$(printf '%s\n' "${LENGTH_LIST[@]}" "$DECODE_DEPTH" | sort -n | tail -n1)
python3 "$SCRIPT_DIR/peer_llama_cpp.py" check-context "$MODEL" "$LONGEST" "$NEW_TOKENS" >/dev/null || exit 2

MODEL=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
if [[ $SKIP_SDTP == 0 ]]; then
    SDTP=$(cd "$(dirname "$SDTP")" && pwd)/$(basename "$SDTP")
fi
# sdtp measures decode after each of its lengths: add the decode depth when it is missing.
SDTP_LENGTHS=$LENGTHS
if ! printf '%s\n' "${LENGTH_LIST[@]}" | grep -qx "$DECODE_DEPTH"; then
    SDTP_LENGTHS="$LENGTHS,$DECODE_DEPTH"
fi

STAMPS=$LDIR/stamps
mkdir -p "$LDIR" "$STAMPS" || die "cannot create cache folder $LDIR"
done_step() { [[ -f $STAMPS/$1.done ]]; }
mark_done() { date -u +%FT%TZ >"$STAMPS/$1.done"; }

# Temporary output folder next to --out, moved into place at the end; removed on any exit.
mkdir -p "$(dirname "$OUT")" || die "cannot create the parent of $OUT"
WORK=$(mktemp -d "${OUT%/}.tmp.XXXXXX") || die "cannot create a temporary folder next to $OUT"
TMP_MODEL=
cleanup() { rm -rf "$WORK"; [[ -z $TMP_MODEL ]] || rm -f "$TMP_MODEL"; }
trap cleanup EXIT
trap 'printf "%s: error: interrupted\n" "$PROG" >&2; exit 130' INT TERM

# ---------------------------------------------------------------- 1. sdist from PyPI
SDIST_DIR=$LDIR/sdist
SDIST=$SDIST_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz
if done_step "download-$LLAMA_CPP_PYTHON_VERSION" && [[ -f $SDIST ]]; then
    log "sdist: cached $SDIST"
else
    log "sdist: downloading llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION from PyPI"
    mkdir -p "$SDIST_DIR"
    # --no-binary names only this package: with :all: pip would also build the sdist's build
    # dependencies (cmake, ninja) from source just to read its metadata, which takes long.
    python3 -m pip download --no-binary llama-cpp-python --no-deps \
        "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$SDIST_DIR" >"$LDIR/download.log" 2>&1 \
        || die_log "pip download of llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" "$LDIR/download.log"
    [[ -f $SDIST ]] || die "pip download did not leave $SDIST"
    gzip -t "$SDIST" 2>/dev/null || die "downloaded sdist $SDIST is not a valid gzip file"
    sha256sum "$SDIST" | cut -d' ' -f1 >"$SDIST.sha256"
    mark_done "download-$LLAMA_CPP_PYTHON_VERSION"
fi

# ---------------------------------------------------------------- 2. extract
SRC=$LDIR/src-$LLAMA_CPP_PYTHON_VERSION
LLAMA_SRC=$SRC/vendor/llama.cpp
if done_step "extract-$LLAMA_CPP_PYTHON_VERSION" && [[ -f $LLAMA_SRC/CMakeLists.txt ]]; then
    log "extract: cached $SRC"
else
    log "extract: unpacking the sdist"
    rm -rf "$SRC" "$SRC.tmp"
    mkdir -p "$SRC.tmp"
    tar -xzf "$SDIST" -C "$SRC.tmp" --strip-components=1 || die "extracting $SDIST"
    [[ -f $SRC.tmp/vendor/llama.cpp/CMakeLists.txt ]] || die "the sdist has no vendor/llama.cpp/CMakeLists.txt"
    mv "$SRC.tmp" "$SRC"
    mark_done "extract-$LLAMA_CPP_PYTHON_VERSION"
fi
# The llama.cpp commit: the sdist has no git metadata (vendor/llama.cpp/.git points into a
# repository that is not shipped); llama-cpp-python's CHANGELOG names the commit it vendors.
LLAMA_COMMIT=$(awk -v v="## [$LLAMA_CPP_PYTHON_VERSION]" '
    index($0, v) == 1 { inside = 1; next }
    inside && /^## \[/ { exit }
    inside && match($0, /llama\.cpp@[0-9a-f]+/) { print substr($0, RSTART + 10, RLENGTH - 10); exit }
' "$SRC/CHANGELOG.md" 2>/dev/null || true)
LLAMA_COMMIT=${LLAMA_COMMIT:-unknown}

# ---------------------------------------------------------------- 3. cmake
find_cmake() {
    local c
    for c in "${CMAKE:-}" "$(command -v cmake 2>/dev/null || true)" "$LDIR/venv/bin/cmake"; do
        if [[ -n $c && -x $c ]] && "$c" --version >/dev/null 2>&1; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    return 1
}
if ! CMAKE_BIN=$(find_cmake); then
    log "cmake: not found; installing it from PyPI into $LDIR/venv"
    rm -rf "$LDIR/venv"
    {
        python3 -m venv "$LDIR/venv" && "$LDIR/venv/bin/python" -m pip install cmake
    } >"$LDIR/cmake-install.log" 2>&1 || die_log "installing cmake from PyPI" "$LDIR/cmake-install.log"
    CMAKE_BIN=$(find_cmake) || die "cmake still not usable after installing it into $LDIR/venv"
fi
log "cmake: $CMAKE_BIN ($("$CMAKE_BIN" --version | head -n1))"

# ---------------------------------------------------------------- 4. build
BUILD=$LDIR/build-$LLAMA_CPP_PYTHON_VERSION
BENCH_BIN=$BUILD/bin/llama-bench
QUANT_BIN=$BUILD/bin/llama-quantize
if done_step "build-$LLAMA_CPP_PYTHON_VERSION" && [[ -x $BENCH_BIN && -x $QUANT_BIN ]]; then
    log "build: cached $BUILD/bin"
else
    log "build: configuring llama.cpp $LLAMA_COMMIT (CPU only, Release, GGML_NATIVE=ON)"
    build_start=$SECONDS
    # LLAMA_CURL is deprecated (ignored) in this llama.cpp; passed anyway for older trees.
    "$CMAKE_BIN" -S "$LLAMA_SRC" -B "$BUILD" \
        -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF \
        -DGGML_NATIVE=ON \
        -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DGGML_VULKAN=OFF -DGGML_HIP=OFF \
        -DGGML_OPENCL=OFF -DGGML_SYCL=OFF -DGGML_RPC=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON \
        -DLLAMA_BUILD_COMMIT="$LLAMA_COMMIT" \
        >"$LDIR/configure.log" 2>&1 || die_log "cmake configure of llama.cpp" "$LDIR/configure.log"
    log "build: compiling llama-bench and llama-quantize (-j$BUILD_JOBS, nice 10; a cold build takes minutes)"
    nice -n 10 "$CMAKE_BIN" --build "$BUILD" --config Release --target llama-bench llama-quantize \
        -j "$BUILD_JOBS" >"$LDIR/build.log" 2>&1 || die_log "building llama-bench/llama-quantize" "$LDIR/build.log"
    [[ -x $BENCH_BIN && -x $QUANT_BIN ]] || die "the build did not produce $BENCH_BIN and $QUANT_BIN"
    printf '%s\n' "$((SECONDS - build_start))" >"$STAMPS/build-seconds"
    mark_done "build-$LLAMA_CPP_PYTHON_VERSION"
    log "build: done in $((SECONDS - build_start)) s"
fi
BENCH_HELP=$("$BENCH_BIN" --help 2>&1 || true)
BENCH_VERSION=$("$BENCH_BIN" --version 2>&1 | head -n1 || true)
[[ $BENCH_HELP == *"-n-prompt"* || $BENCH_HELP == *"n-prompt"* ]] || die "$BENCH_BIN --help does not look like llama-bench"

# ---------------------------------------------------------------- 5. requantize
BENCH_MODEL=$MODEL
if [[ -n $REQUANT ]]; then
    QUANT_HELP=$("$QUANT_BIN" --help 2>&1 || true)
    grep -qiE "^[[:space:]]*[0-9]+[[:space:]]+or[[:space:]]+${REQUANT}[[:space:]]*:" <<<"$QUANT_HELP" \
        || bad_arg "--requant: llama-quantize does not know the type '$REQUANT' (its list: $QUANT_BIN --help)"
    stem=$(basename "$MODEL" .gguf)
    BENCH_MODEL=$CACHE/models/$stem.$REQUANT.gguf
    if [[ -f $BENCH_MODEL ]]; then
        log "requant: cached $BENCH_MODEL"
    else
        log "requant: $(basename "$MODEL") -> $(basename "$BENCH_MODEL") ($REQUANT)"
        mkdir -p "$CACHE/models"
        TMP_MODEL="$BENCH_MODEL.tmp.$$.gguf"
        "$QUANT_BIN" --allow-requantize "$MODEL" "$TMP_MODEL" "$REQUANT" "$THREADS" \
            >"$LDIR/quantize.log" 2>&1 || die_log "llama-quantize to $REQUANT" "$LDIR/quantize.log"
        mv "$TMP_MODEL" "$BENCH_MODEL"
        TMP_MODEL=
    fi
fi

# ---------------------------------------------------------------- 6. llama-bench
# Share of all CPUs busy over the next 2 s (from /proc/stat; empty where it cannot be read):
# other work on the machine skews both tools, llama.cpp's spinning threads most.
cpu_busy_percent() {
    local a b
    a=$(awk '/^cpu /{ print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat 2>/dev/null) || return 0
    sleep 2
    b=$(awk '/^cpu /{ print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat 2>/dev/null) || return 0
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); t = (y[1]-x[1]) + (y[2]-x[2]);
        if (t > 0) printf "%.0f\n", 100 * (y[1]-x[1]) / t }'
}
check_idle() { # $1: what is about to run; sets BUSY_<$2>
    local busy
    busy=$(cpu_busy_percent)
    printf -v "BUSY_$2" '%s' "$busy"
    if [[ -n $busy ]] && (( busy > 15 )); then
        log "WARNING: ${busy}% of the CPUs are busy with other work before $1: timings will be noisy"
    fi
}
# CPU time the whole machine spent busy, CPU time this script's finished children used (both
# in clock ticks), and the wall clock: two snapshots give the share of the CPUs that other work
# took while a tool ran (steal time counts as other work).
cpu_snapshot() {
    local machine children
    machine=$(awk '/^cpu /{ print $2+$3+$4+$7+$8+$9 }' /proc/stat 2>/dev/null) || return 0
    children=$(sed 's/.*) //' "/proc/$$/stat" 2>/dev/null | awk '{ print $14+$15 }') || return 0
    printf '%s %s %s\n' "$machine" "$children" "$(date +%s.%N)"
}
other_percent() { # $1, $2: snapshots before and after
    [[ -n $1 && -n $2 ]] || return 0
    awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" 'BEGIN {
        split(a, x, " "); split(b, y, " "); wall = y[3] - x[3];
        if (wall <= 0) exit;
        other = ((y[1] - x[1]) - (y[2] - x[2])) / hz;
        if (other < 0) other = 0;
        printf "%.0f\n", 100 * other / (wall * n) }'
}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "")
BUSY_LLAMA= BUSY_SDTP= OTHER_LLAMA= OTHER_SDTP=
PROGRESS_FLAG=()
[[ $BENCH_HELP == *"--progress"* ]] && PROGRESS_FLAG=(--progress)
DEPTH_MODE=n-depth
if [[ $BENCH_HELP != *"--n-depth"* ]]; then
    # Older llama-bench: -pg D,N times a D-token prompt plus N decoded tokens; a pp<D> test in
    # the same run is subtracted from it (peer_llama_cpp.py) to give the decode time.
    DEPTH_MODE=pg
    [[ $BENCH_HELP == *"-pg"* ]] || DEPTH_MODE=none
    log "WARNING: this llama-bench has no --n-depth: decode after $DECODE_DEPTH tokens is measured as" \
        "$([[ $DEPTH_MODE == pg ]] && echo "-pg $DECODE_DEPTH,$NEW_TOKENS minus pp$DECODE_DEPTH" || echo "tg on an empty context")"
fi
# Stdin (a tool's stderr) goes whole to the log $1 and, its progress lines only, to stderr.
show_progress() {
    tee "$1" | { grep --line-buffered -E '^llama-bench:|error' >&2 || true; }
}
reuse_or_missing() { # copies $OUT/$1 into $WORK when present (for --skip-*)
    if [[ -f $OUT/$1 ]]; then cp "$OUT/$1" "$WORK/$1"; log "reusing $OUT/$1"; else log "no $OUT/$1 to reuse"; fi
}
if [[ $SKIP_LLAMA == 1 ]]; then
    log "llama-bench: skipped (--skip-llama)"
    reuse_or_missing llama_bench_pp.json
    reuse_or_missing llama_bench_tg.json
else
    check_idle llama-bench LLAMA
    snap=$(cpu_snapshot)
    log "llama-bench: prefill pp{$LENGTHS}, $THREADS threads, -r $REPEATS, $(basename "$BENCH_MODEL")"
    "$BENCH_BIN" -m "$BENCH_MODEL" -t "$THREADS" -p "$LENGTHS" -n 0 -r "$REPEATS" -o json \
        "${PROGRESS_FLAG[@]}" 2>&1 >"$WORK/llama_bench_pp.json" | show_progress "$WORK/llama_bench_pp.log" \
        || die_log "llama-bench prefill run" "$WORK/llama_bench_pp.log"
    case $DEPTH_MODE in
        n-depth)
            log "llama-bench: decode tg$NEW_TOKENS at depth $DECODE_DEPTH"
            tg_args=(-p 0 -n "$NEW_TOKENS" -d "$DECODE_DEPTH") ;;
        pg)
            log "llama-bench: decode as pg$DECODE_DEPTH,$NEW_TOKENS - pp$DECODE_DEPTH (no --n-depth in this version)"
            tg_args=(-p "$DECODE_DEPTH" -n 0 -pg "$DECODE_DEPTH,$NEW_TOKENS") ;;
        *)
            log "llama-bench: decode tg$NEW_TOKENS on an empty context (neither --n-depth nor -pg in this version)"
            tg_args=(-p 0 -n "$NEW_TOKENS") ;;
    esac
    "$BENCH_BIN" -m "$BENCH_MODEL" -t "$THREADS" "${tg_args[@]}" -r "$REPEATS" -o json \
        "${PROGRESS_FLAG[@]}" 2>&1 >"$WORK/llama_bench_tg.json" | show_progress "$WORK/llama_bench_tg.log" \
        || die_log "llama-bench decode run" "$WORK/llama_bench_tg.log"
    for f in llama_bench_pp.json llama_bench_tg.json; do
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert isinstance(d,list) and d' "$WORK/$f" 2>/dev/null \
            || die_log "llama-bench (its $f is not a non-empty JSON list)" "$WORK/${f%.json}.log"
    done
    OTHER_LLAMA=$(other_percent "$snap" "$(cpu_snapshot)")
    [[ -z $OTHER_LLAMA ]] || (( OTHER_LLAMA <= 10 )) \
        || log "WARNING: other work took ${OTHER_LLAMA}% of the CPUs while llama-bench ran: its timings are noisy"
fi

# ---------------------------------------------------------------- 7. sdtp
if [[ $SKIP_SDTP == 1 ]]; then
    log "sdtp: skipped (--skip-sdtp)"
    reuse_or_missing sdtp.json
else
    check_idle sdtp SDTP
    snap=$(cpu_snapshot)
    log "sdtp: profile end2end --length $SDTP_LENGTHS, baseline and keep09, RAYON_NUM_THREADS=$THREADS"
    (cd "$REPO_ROOT" && RAYON_NUM_THREADS=$THREADS "$SDTP" profile end2end \
        --model "$BENCH_MODEL" --device cpu --length "$SDTP_LENGTHS" --new-tokens "$NEW_TOKENS" \
        --repeats "$REPEATS" --schedule keep09 --no-prune-log --json "$WORK/sdtp.json" \
        2>&1 >"$WORK/sdtp.txt") | tee "$WORK/sdtp.log" >&2 \
        || die_log "sdtp profile end2end" "$WORK/sdtp.log"
    [[ -s $WORK/sdtp.json ]] || die "sdtp wrote no $WORK/sdtp.json"
    OTHER_SDTP=$(other_percent "$snap" "$(cpu_snapshot)")
    [[ -z $OTHER_SDTP ]] || (( OTHER_SDTP <= 10 )) \
        || log "WARNING: other work took ${OTHER_SDTP}% of the CPUs while sdtp ran: its timings are noisy"
fi

# ---------------------------------------------------------------- 8. the comparison
BUILD_SECONDS=$(cat "$STAMPS/build-seconds" 2>/dev/null || echo "")
SDTP_HEAD=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
python3 "$SCRIPT_DIR/peer_llama_cpp.py" \
    --work "$WORK" \
    --model "$BENCH_MODEL" --source-model "$MODEL" --requant "$REQUANT" \
    --threads "$THREADS" --lengths "$LENGTHS" --new-tokens "$NEW_TOKENS" \
    --decode-depth "$DECODE_DEPTH" --depth-mode "$DEPTH_MODE" --repeats "$REPEATS" \
    --llama-cpp-python "$LLAMA_CPP_PYTHON_VERSION" --llama-commit "$LLAMA_COMMIT" \
    --sdist-sha256 "$(cat "$SDIST.sha256" 2>/dev/null || echo unknown)" \
    --build-seconds "$BUILD_SECONDS" --sdtp-head "$SDTP_HEAD" --llama-bench-version "$BENCH_VERSION" \
    --load-start "$LOAD_START" --busy-before-llama "$BUSY_LLAMA" --busy-before-sdtp "$BUSY_SDTP" \
    --other-during-llama "$OTHER_LLAMA" --other-during-sdtp "$OTHER_SDTP" \
    || die "building the comparison table (scripts/peer_llama_cpp.py)"

# ---------------------------------------------------------------- 9. publish
mkdir -p "$OUT" || die "cannot create $OUT"
for f in "$WORK"/*; do
    [[ -e $f ]] || continue
    mv -f "$f" "$OUT/" || die "moving $(basename "$f") into $OUT"
done
cat "$OUT/peer.md"
log "done: $OUT/peer.md, $OUT/peer.json"
