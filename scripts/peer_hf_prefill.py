#!/usr/bin/env python3
"""The peer benchmark: HF transformers + PyTorch SDPA on a random-initialised model of the same
shape as `sdtp profile prefill --model synthetic:<preset>`, unpruned and with a manual
SDTP-style layer loop (same stages, same attention scorer, same head/tail rules), timed the
same way (CUDA synchronised around each prefill, median of --repeats after --warmup,
baseline and SDTP alternating). Prints a table and writes JSON shaped like sdtp's
(`results[].{length, mode, schedule, summary.prefill_ms{median,min,max,mean,sd}, kept,
repetitions[]}`), so docs/benchmarks.md can set both side by side.

Usage (on the GPU machine, where torch and transformers are installed):
  python3 scripts/peer_hf_prefill.py --preset llama2-7b --length 1024,4096 --json peer.json
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

# Same shapes as src/model/config.rs's synthetic presets.
PRESETS = {
    "llama2-7b": dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=11008,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      rope_theta=10000.0),
    "llama3-8b": dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336,
                      num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                      rope_theta=500000.0),
    "mistral-7b": dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=32000,
                       rope_theta=1000000.0),
    "smollm2-135m": dict(num_hidden_layers=30, hidden_size=576, intermediate_size=1536,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                         rope_theta=100000.0),
}

# keep09 for 32-layer models, as configs/keep09.toml.
KEEP09 = [(layer, 0.9) for layer in (4, 7, 10, 13, 16, 19, 22, 25)]


def build_model(preset, dtype, device):
    cfg = LlamaConfig(**PRESETS[preset], max_position_embeddings=131072, rms_norm_eps=1e-5,
                      tie_word_embeddings=False, attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    model.eval()
    return model


def kept_len(n, keep, head, tail_ratio):
    tail = max(1, math.ceil(tail_ratio * n))
    mandatory = len(set(range(min(head, n))) | set(range(n - min(tail, n), n)))
    return min(n, max(mandatory, round(keep * n)))


def tail_attention_scores(q, k, tail):
    """Mean attention the last `tail` queries pay to each key (causal), over heads and
    queries: the `attention` scorer of src/prune/scorer.rs. q: (1,H,n,d), k: (1,KV,n,d)."""
    n = q.shape[2]
    groups = q.shape[1] // k.shape[1]
    qt = q[:, :, n - tail:, :].float()
    kk = k.float().repeat_interleave(groups, dim=1)
    scores = qt @ kk.transpose(-1, -2) / math.sqrt(q.shape[-1])
    rows = torch.arange(n - tail, n, device=q.device)[:, None]
    cols = torch.arange(n, device=q.device)[None, :]
    scores = scores.masked_fill(cols > rows, float("-inf"))
    return scores.softmax(-1).mean(dim=(0, 1, 2))


@torch.no_grad()
def prefill(model, ids, stages, head=4, tail_ratio=0.1):
    """Unpruned when `stages` is empty; else the manual layer loop that prunes after each
    stage layer, keeping original positions. Returns (last-token logits, final length)."""
    inner = model.model
    if not stages:
        out = model(input_ids=ids, use_cache=False, logits_to_keep=1)
        return out.logits[:, -1], ids.shape[1]
    hidden = inner.embed_tokens(ids)
    n = ids.shape[1]
    positions = torch.arange(n, device=ids.device)[None, :]
    stage_of = dict(stages)
    for index, layer in enumerate(inner.layers):
        pos_emb = inner.rotary_emb(hidden, positions)
        keep = stage_of.get(index)
        if keep is not None:
            # The scorer needs this layer's queries and keys: recompute them from its input.
            attn = layer.self_attn
            normed = layer.input_layernorm(hidden)
            b, t, _ = normed.shape
            hd = attn.head_dim
            q = attn.q_proj(normed).view(b, t, -1, hd).transpose(1, 2)
            k = attn.k_proj(normed).view(b, t, -1, hd).transpose(1, 2)
            cos, sin = pos_emb
            q, k = transformers.models.llama.modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)
        hidden = layer(hidden, position_embeddings=pos_emb, position_ids=positions,
                       attention_mask=None)
        if isinstance(hidden, tuple):
            hidden = hidden[0]
        if keep is not None:
            t = hidden.shape[1]
            tail = max(1, math.ceil(tail_ratio * t))
            scores = tail_attention_scores(q, k, tail)
            count = kept_len(t, keep, head, tail_ratio)
            mandatory = torch.zeros(t, dtype=torch.bool, device=ids.device)
            mandatory[: min(head, t)] = True
            mandatory[t - tail:] = True
            scores = scores.masked_fill(mandatory, float("inf"))
            kept = scores.topk(count).indices.sort().values
            hidden = hidden[:, kept]
            positions = positions[:, kept]
    hidden = inner.norm(hidden[:, -1:])
    return model.lm_head(hidden)[:, -1], positions.shape[1]


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn):
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return (time.perf_counter() - start) * 1e3, result


def summary(values):
    return dict(n=len(values), median=statistics.median(values), min=min(values),
                max=max(values), mean=statistics.fmean(values),
                sd=statistics.stdev(values) if len(values) > 1 else 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="llama2-7b", choices=sorted(PRESETS))
    ap.add_argument("--length", default="1024,2048,4096,8192,16384,32768")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16"])
    ap.add_argument("--device", default="cuda", help="cuda, or cpu to check the script on a small preset")
    ap.add_argument("--json")
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    dev = torch.device(args.device)
    on_cuda = dev.type == "cuda"
    model = build_model(args.preset, dtype, dev)
    device_name = torch.cuda.get_device_name() if on_cuda else "cpu"
    vocab = model.config.vocab_size
    results = []
    print(f"peer: HF transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{device_name}, synthetic:{args.preset} {args.dtype}, SDPA")
    print(f"{'length':>7} {'mode':>8} {'prefill ms (median [min-max])':>32} {'final tokens':>12}")
    for length in [int(x) for x in args.length.split(",")]:
        gen = torch.Generator(device=dev).manual_seed(length)
        ids = torch.randint(0, vocab, (1, length), device=dev, generator=gen)
        modes = [("baseline", "none", []), ("sdtp", "keep09", KEEP09)]
        times = {m: [] for m, _, _ in modes}
        finals = {}
        peaks = {m: 0 for m, _, _ in modes}
        out_of_memory = set()
        for rep in range(args.warmup + args.repeats):
            for mode, _, stages in modes:
                if mode in out_of_memory:
                    continue
                try:
                    if on_cuda:
                        torch.cuda.reset_peak_memory_stats()
                    ms, (_, final) = timed(lambda: prefill(model, ids, stages))
                except torch.OutOfMemoryError:
                    # One mode may not fit where the other does (the SDTP loop materialises
                    # the tail queries' scores in f32): report what ran.
                    out_of_memory.add(mode)
                    print(f"{length:>7} {mode:>8} out of GPU memory; skipped")
                    if on_cuda:
                        torch.cuda.empty_cache()
                    continue
                finals[mode] = int(final)
                if on_cuda:
                    peaks[mode] = max(peaks[mode], torch.cuda.max_memory_allocated())
                if rep >= args.warmup:
                    times[mode].append(ms)
        for mode, schedule, _ in modes:
            if mode in out_of_memory:
                continue
            s = summary(times[mode])
            results.append(dict(length=length, mode=mode, schedule=schedule,
                                scorer=None if mode == "baseline" else "attention",
                                kept=dict(final_tokens=finals[mode]),
                                peak_memory_bytes=peaks[mode],
                                summary=dict(prefill_ms=s),
                                repetitions=[dict(index=i, prefill_ms=v) for i, v in enumerate(times[mode])]))
            print(f"{length:>7} {mode:>8} {s['median']:>12.1f} [{s['min']:.1f}-{s['max']:.1f}] {finals[mode]:>12}")
        if on_cuda:
            torch.cuda.empty_cache()
    if args.json:
        report = dict(schema_version=1, tool="hf-transformers-sdpa", transformers=transformers.__version__,
                      torch=torch.__version__, device=device_name, dtype=args.dtype,
                      model=f"synthetic:{args.preset}", repeats=args.repeats, warmup=args.warmup,
                      results=results)
        with open(args.json + ".tmp", "w") as f:
            json.dump(report, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    sys.exit(main())
