#!/usr/bin/env bash
# On the GPU machine: adds one call's files packed by scripts/gpu_stage.sh to DIR (a folder
# outside the repo copy, which a warm machine keeps between calls), unzips the binaries and,
# once the model's parts and SHA256SUMS are all there, joins the model and checks its sha256.
# Usage: scripts/gpu_unstage.sh DIR gpu/callN
set -euo pipefail
dir=${1:?DIR}; call=${2:?gpu/callN}
mkdir -p "$dir"
cp "$call"/* "$dir"/
cd "$dir"
for z in *.gz; do [ -e "$z" ] && gunzip -f "$z"; done
chmod +x sdtp flash_attention 2>/dev/null || true
if [ -f SHA256SUMS ] && ls model.part-* >/dev/null 2>&1; then
  name=$(awk '{print $2}' SHA256SUMS)
  cat model.part-* > "$name"
  sha256sum --check SHA256SUMS
  rm -f model.part-*
fi
ls -la "$dir"
