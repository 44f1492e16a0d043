#!/usr/bin/env bash
# Regenerate tests/fixtures/smollm2_reference.json with the independent numpy
# reference (scripts/make_reference.py). Idempotent: creates the venv only if
# missing and pip skips already-satisfied pinned requirements.
#
# Usage: scripts/make_reference.sh [--model PATH] [--out PATH]
# Env:   SDTP_VENV (default ~/.cache/sdtp/venv), PYTHON (default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SDTP_VENV:-$HOME/.cache/sdtp/venv}"
PYTHON="${PYTHON:-python3}"
REQ="$ROOT/scripts/reference-requirements.txt"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv at $VENV" >&2
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"

# the machine is small; keep BLAS from oversubscribing
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"

cd "$ROOT"
exec "$VENV/bin/python" "$ROOT/scripts/make_reference.py" "$@"
