#!/usr/bin/env bash
# On the GPU machine: rebuilds what scripts/gpu_stage.sh packed, in DIR (outside the repo
# copy, where call 1 left gpu/call1's files), from DIR's files and gpu/call2/: unzips the
# binaries, joins the model's parts and checks its sha256. Usage: scripts/gpu_unstage.sh DIR
set -euo pipefail
dir=${1:?DIR}
cp gpu/call2/* "$dir"/
cd "$dir"
for z in *.gz; do gunzip -f "$z"; done
chmod +x sdtp flash_attention 2>/dev/null || true
name=$(awk '{print $2}' SHA256SUMS)
cat model.part-* > "$name"
sha256sum --check SHA256SUMS
rm -f model.part-*
