#!/usr/bin/env python3
"""The sdtp-vs-peer table of docs/benchmarks.md from one run of scripts/gpu_bench.sh.

  python3 scripts/benchmark_table.py OUT_DIR/sdtp.json OUT_DIR/peer.json

Columns: prefill medians of sdtp and of the HF transformers SDPA peer, unpruned and keep09,
their ratios, sdtp's keep09 speedup over its own unpruned prefill, the schedule's FLOP-ideal
speedup (model FLOPs, as `sdtp profile` prints it) and the share of it reached, and the peak
GPU memory of each sdtp run. Ratios in bold meet the GPU issue's targets.
"""

import json
import sys


def by_length_mode(results):
    return {(r["length"], r["mode"]): r for r in results}


def median(r):
    return r["summary"]["prefill_ms"]["median"]


def fmt_ms(r):
    s = r["summary"]["prefill_ms"]
    return f"{s['median']:.1f} [{s['min']:.1f}–{s['max']:.1f}]"


def main():
    sdtp = json.load(open(sys.argv[1]))
    peer = json.load(open(sys.argv[2]))
    ours, theirs = by_length_mode(sdtp["results"]), by_length_mode(peer["results"])
    lengths = sorted({length for length, _ in ours})
    print("| length | sdtp unpruned ms | HF SDPA ms | ratio | sdtp keep09 ms | HF keep09 loop ms "
          "| ratio | keep09 speedup | FLOP-ideal | of ideal | peak GiB unpruned / keep09 |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in lengths:
        base, pruned = ours[(n, "baseline")], ours[(n, "keep09")]
        peer_base, peer_pruned = theirs.get((n, "baseline")), theirs.get((n, "sdtp"))
        speedup = pruned["speedup"]["prefill"]
        ideal = pruned["speedup"]["prefill_flop_ideal"]

        def ratio(mine, other, target):
            if other is None:
                return "—"
            value = median(mine) / median(other)
            return f"**{value:.2f}**" if value <= target else f"{value:.2f}"

        share = speedup / ideal
        share_text = f"{100 * share:.0f}%"
        if n >= 4096:
            share_text = f"**{share_text}**" if share >= 0.95 else share_text
        peak = lambda r: r["summary"]["peak_memory_bytes"]["median"] / 2**30
        print(f"| {n} | {fmt_ms(base)} | {fmt_ms(peer_base) if peer_base else 'out of memory'} "
              f"| {ratio(base, peer_base, 1.0)} | {fmt_ms(pruned)} "
              f"| {fmt_ms(peer_pruned) if peer_pruned else 'out of memory'} "
              f"| {ratio(pruned, peer_pruned, 0.9)} | {speedup:.2f}× | {ideal:.2f}× | {share_text} "
              f"| {peak(base):.1f} / {peak(pruned):.1f} |")


if __name__ == "__main__":
    main()
