#!/usr/bin/env python3
"""The end-to-end peer benchmark: HF transformers `model.generate` (prefill + greedy decode)
on a random-initialised LlamaForCausalLM of the same shape as `sdtp profile end2end --model
synthetic:<preset>`, set up the fastest documented way, so docs/benchmarks.md can set it
beside sdtp's end2end report from the same run on the same GPU.

Per prompt length and mode: random prompt ids (seeded per length, the same for every mode),
then exactly --new-tokens greedy tokens (no EOS token is configured, so nothing stops a run
early; the count is checked after every run). Timed with the device synchronised before every
clock read: TTFT from the call of `generate` to the first generated token (prefill, first
token, and generate's own set-up, e.g. allocating the static cache), decode tokens/s =
(new_tokens - 1) / (last token - first token), total from the call to its return.
--warmup unmeasured runs (at least 2 in the compiled mode: CUDA graphs are recorded there),
then --repeats measured ones; median, min and max reported.

Modes (--modes, both by default):
  static-compile  static KV cache sized length + new_tokens, and generate's own compilation of
                  the one-token decode step with CompileConfig(fullgraph=True,
                  mode="reduce-overhead") (CUDA graphs); the prefill runs eagerly with SDPA.
                  If compilation fails: fullgraph=False, then the static cache uncompiled,
                  with "compile_failed" in the JSON.
  eager           generate's default dynamic cache, nothing compiled.

Prints a table and writes --json (rewritten after each length, so a cut-off run keeps what
it measured; "complete" is true only at the end; through PATH.tmp and a rename).

Usage (on the GPU machine, where torch and transformers are installed):
  python3 scripts/peer_hf_decode.py --preset llama2-7b --length 4096,32768 --json peer-e2e.json
"""

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

# sdtp's synthetic models accept length + new_tokens - 1 <= this (src/model/config.rs).
CONTEXT = 131072
MODES = ("static-compile", "eager")
COMPILE_MODE = "reduce-overhead"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def fail(message):
    sys.exit(f"peer_hf_decode.py: error: {message}")


def parse_args(argv):
    ap = Parser(prog="peer_hf_decode.py", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="llama2-7b",
                    help="model shape: a preset of peer_hf_prefill.py's PRESETS (llama2-7b, llama3-8b, "
                         "mistral-7b, smollm2-135m) or tiny (default llama2-7b)")
    ap.add_argument("--length", default="4096,32768",
                    help="comma-separated prompt lengths in tokens (default 4096,32768)")
    ap.add_argument("--new-tokens", type=int, default=128, help="tokens generated per run, >= 2 (default 128)")
    ap.add_argument("--repeats", type=int, default=3, help="measured runs per length and mode (default 3)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="unmeasured runs first (default 1; static-compile always does at least 2)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)} (default both)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16"])
    ap.add_argument("--device", default="cuda", help="cuda (default), or cpu to check the script on the tiny preset")
    ap.add_argument("--seed", type=int, default=0, help="weights and prompt seed (default 0)")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)

    try:
        args.lengths = [int(x) for x in args.length.split(",")]
    except ValueError:
        ap.error(f"--length must be comma-separated integers, got {args.length!r}")
    if any(n <= 0 for n in args.lengths):
        ap.error(f"every --length must be > 0, got {args.length}")
    if args.new_tokens < 2:
        ap.error(f"--new-tokens must be >= 2 (decode speed needs tokens after the first), got {args.new_tokens}")
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.warmup < 0:
        ap.error(f"--warmup must be >= 0, got {args.warmup}")
    longest = max(args.lengths)
    if longest + args.new_tokens - 1 > CONTEXT:
        # The same rule and limit as `sdtp profile end2end` on a synthetic model, so both
        # sides of the comparison always run the same lengths.
        ap.error(f"length {longest} with {args.new_tokens} new tokens is above the synthetic context of "
                 f"{CONTEXT} tokens (it needs {longest + args.new_tokens - 1} positions); use a --length "
                 f"of at most {CONTEXT - args.new_tokens + 1}")
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.mode_list if m not in MODES]
    if unknown or not args.mode_list:
        ap.error(f"--modes takes a comma list of {', '.join(MODES)}, got {args.modes!r}")
    if len(set(args.mode_list)) != len(args.mode_list):
        ap.error(f"--modes names a mode twice: {args.modes!r}")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            ap.error(f"--json: folder {folder} does not exist")
    return args


# ---- everything below needs torch and transformers (imported after the arguments) ----

torch = None
transformers = None


def import_torch():
    global torch, transformers
    try:
        import torch as _torch
        import transformers as _transformers
    except ImportError as e:
        fail(f"needs torch and transformers ({e})")
    torch, transformers = _torch, _transformers
    # The shapes live in one place: the prefill peer's PRESETS (same as sdtp's synthetic
    # presets), plus sdtp's `tiny` for checking this script on a CPU.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.dont_write_bytecode = True  # no scripts/__pycache__ left in the work tree
    from peer_hf_prefill import PRESETS, summary
    presets = dict(PRESETS)
    presets.setdefault("tiny", dict(num_hidden_layers=6, hidden_size=64, intermediate_size=128,
                                    num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
                                    rope_theta=10000.0, tie_word_embeddings=True))
    return presets, summary


def build_model(shape, dtype, device, seed):
    """Random weights straight in `dtype` on `device`: no float32 copy, no load."""
    from transformers import AutoModelForCausalLM, LlamaConfig
    shape = dict(shape)
    tie = shape.pop("tie_word_embeddings", False)
    # No BOS/EOS/pad ids (sdtp's synthetic models have none either): with no EOS id, generate
    # has no EOS stopping criterion at all, so every run is exactly max_new_tokens long.
    cfg = LlamaConfig(**shape, max_position_embeddings=CONTEXT, rms_norm_eps=1e-5,
                      tie_word_embeddings=tie, attn_implementation="sdpa",
                      bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(seed)
    with torch.device(device):
        # from_config(dtype=) builds under that default dtype (transformers 5: `dtype`, the
        # old `torch_dtype` is deprecated); the RoPE inverse frequencies stay float32 as in a
        # from_pretrained load.
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    # transformers already draws N(0, 0.02) in post_init; draw again explicitly so the weights
    # never depend on its initialisation rules (RMSNorm weights stay 1). On the GPU this is
    # milliseconds even for 8B.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                module.weight.normal_(0.0, 0.02)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
    model.eval()
    gc_ = model.generation_config
    gc_.bos_token_id = gc_.eos_token_id = gc_.pad_token_id = None
    return model


def device_sync(device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def is_oom(e):
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def one_line(e, limit=300):
    text = " ".join(str(e).split())
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def free_memory(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_compile_state(model, device):
    """Forget compiled graphs, CUDA graphs (torch._dynamo.reset resets the cudagraph trees) and
    generate's memory of earlier static-cache sizes, so each (length, mode) compiles afresh
    (its warm-up time is comparable across lengths) and gets a cache of exactly length +
    new_tokens (transformers otherwise keeps the largest size seen in `_previous_max_cache_length`,
    and a shorter prompt after a longer one would decode over the longer cache)."""
    torch._dynamo.reset()
    for attr in ("_compiled_call", "_last_compile_config", "_previous_max_cache_length"):
        if attr in model.__dict__:
            delattr(model, attr)
    free_memory(device)


def unique_graphs():
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def make_token_clock(sync):
    from transformers.generation.streamers import BaseStreamer

    class TokenClock(BaseStreamer):
        """generate calls put() once with the prompt, then once per new token as soon as it is
        chosen (transformers 5.17 StopCheck: `streamer.put(tokens.cpu())`, which already waits
        for the device); the clock is read with the device synchronised."""

        def __init__(self):
            self.prompt_seen = False
            self.times = []

        def put(self, value):
            sync()
            now = time.perf_counter()
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            self.times.append(now)

        def end(self):
            pass

    return TokenClock


def generate_once(model, ids, mask, new_tokens, gen_kwargs, device, sync, clock_cls):
    """One timed `generate`. Returns the repetition record."""
    on_cuda = device.type == "cuda"
    clock = clock_cls()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    start = time.perf_counter()
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=False, eos_token_id=None,
                         pad_token_id=None, streamer=clock, **gen_kwargs)
    sync()
    end = time.perf_counter()
    generated = out.shape[1] - ids.shape[1]
    if generated != new_tokens or len(clock.times) != new_tokens:
        raise RuntimeError(f"generate made {generated} tokens ({len(clock.times)} streamed), "
                           f"expected exactly {new_tokens}")
    times = clock.times
    decode_s = times[-1] - times[0]
    steps = [b - a for a, b in zip(times, times[1:])]
    return dict(ttft_ms=(times[0] - start) * 1e3,
                decode_ms=decode_s * 1e3,
                decode_tok_s=(new_tokens - 1) / decode_s if decode_s > 0 else None,
                total_ms=(end - start) * 1e3,
                generated_tokens=generated,
                # The slowest decode step: a CUDA-graph re-record or recompile inside a
                # measured run would show here.
                max_step_ms=max(steps) * 1e3,
                peak_memory_bytes=torch.cuda.max_memory_allocated(device) if on_cuda else None)


def compile_attempts(mode, device):
    """(label, generate kwargs) to try in order; the last one must not compile."""
    if mode == "eager":
        # The default dynamic cache (never compiled by generate); disable_compile makes sure.
        return [("none", dict(cache_implementation=None, disable_compile=True))]
    from transformers import CompileConfig

    def config(fullgraph):
        cc = CompileConfig(fullgraph=fullgraph, mode=COMPILE_MODE)
        if device.type != "cuda":
            # generate only auto-compiles on accelerators; this flag (meant for testing)
            # lets the CPU check exercise the same path.
            cc._compile_all_devices = True
        return cc

    # Why generate's own compilation and not the older recipe `model.forward =
    # torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)`: since 4.48
    # `generate` compiles the decode step itself whenever the cache is a static one
    # (cache_implementation="static"), with CompileConfig's settings (default
    # mode="reduce-overhead", i.e. CUDA graphs) and keeps the prefill eager (transformers 5.17,
    # generation/utils.py `_sample`: `model_forward = self.get_compiled_call(...)` for the
    # decode steps, `self._prefill` uncompiled). Compiling model.forward as well would compile
    # the prefill once per prompt length, capture a CUDA graph of a 128K-token prefill, and
    # create the static cache inside a traced region, which 5.x's StaticLayer says "should be
    # avoided" (no static addresses for the CUDA graphs). fullgraph=True: the whole decode
    # step is one graph, or an error (then fullgraph=False, then no compilation).
    return [("fullgraph", dict(cache_implementation="static", compile_config=config(True))),
            ("partial", dict(cache_implementation="static", compile_config=config(False))),
            ("none", dict(cache_implementation="static", disable_compile=True))]


def run_mode(model, ids, mode, args, device, sync, clock_cls, summary):
    """Warm-up then measured runs of one (length, mode). Returns the result record."""
    length = ids.shape[1]
    mask = torch.ones_like(ids)
    result = dict(length=length, mode=mode, new_tokens=args.new_tokens,
                  cache="dynamic" if mode == "eager" else "static")
    warmups = args.warmup if mode == "eager" else max(args.warmup, 2)
    failures = []
    for label, gen_kwargs in compile_attempts(mode, device):
        reset_compile_state(model, device)
        graphs_before = unique_graphs()
        start = time.perf_counter()
        try:
            for _ in range(warmups):
                generate_once(model, ids, mask, args.new_tokens, gen_kwargs, device, sync, clock_cls)
        except Exception as e:  # noqa: BLE001 - any compile error means: try the next attempt
            if is_oom(e) or label == "none":
                raise
            failures.append(f"{label}: {one_line(e)}")
            print(f"{length:>7} {mode:>14} note: compilation ({label}) failed, trying the next way: "
                  f"{one_line(e, 160)}", flush=True)
            continue
        result["warmup_runs"] = warmups
        result["warmup_s"] = time.perf_counter() - start
        result["compile"] = label
        result["compiled_graphs"] = unique_graphs() - graphs_before
        if label != "none" and result["compiled_graphs"] == 0:
            print(f"{length:>7} {mode:>14} note: generate compiled nothing (auto-compile criteria not met); "
                  f"the runs are uncompiled", flush=True)
        break
    if failures:
        result["compile_failed"] = "; ".join(failures)
    graphs_before = unique_graphs()
    reps = []
    for index in range(args.repeats):
        rep = generate_once(model, ids, mask, args.new_tokens, gen_kwargs, device, sync, clock_cls)
        reps.append(dict(index=index, **rep))
    # 0 when the measured runs reused the warm-up's graphs, as they should.
    result["graphs_compiled_in_measured_runs"] = unique_graphs() - graphs_before
    metrics = ("ttft_ms", "decode_ms", "decode_tok_s", "total_ms", "max_step_ms", "peak_memory_bytes")
    result["summary"] = {m: (summary([r[m] for r in reps]) if all(r[m] is not None for r in reps) else None)
                         for m in metrics}
    result["repetitions"] = reps
    return result


def fmt_range(s, digits=1):
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def write_json(path, report):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    presets, summary = import_torch()
    if args.preset not in presets:
        fail(f"unknown --preset {args.preset!r} (available: {', '.join(sorted(presets))})")
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        fail(f"--device {args.device!r}: {one_line(e)}")
    if device.type == "cuda" and not torch.cuda.is_available():
        fail("--device cuda but CUDA is not available here (use --device cpu with --preset tiny to check the script)")
    if device.type not in ("cuda", "cpu"):
        fail(f"--device must be cuda or cpu, got {args.device!r}")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    on_cuda = device.type == "cuda"
    device_name = torch.cuda.get_device_name(device) if on_cuda else f"cpu ({platform.processor() or platform.machine()})"
    sync = device_sync(device)
    clock_cls = make_token_clock(sync)

    build_start = time.perf_counter()
    model = build_model(presets[args.preset], dtype, device, args.seed)
    sync()
    build_s = time.perf_counter() - build_start
    vocab = model.config.vocab_size
    with torch.no_grad():
        probe = torch.randint(0, vocab, (1, 8), device=device)
        if not bool(model(input_ids=probe).logits.isfinite().all()):
            fail("the random model's logits are not finite")
    attention = model.config._attn_implementation

    print(f"peer: HF transformers {transformers.__version__}, torch {torch.__version__}, {device_name}, "
          f"synthetic:{args.preset} {args.dtype}, attention {attention}, built in {build_s:.1f} s; "
          f"{args.new_tokens} new tokens, greedy, {args.repeats} repeats after {args.warmup} warm-up", flush=True)
    header = (f"{'length':>7} {'mode':>14} {'compile':>9} {'TTFT ms (median [min-max])':>28} "
              f"{'decode tok/s':>12} {'total ms (median [min-max])':>29} {'warm-up s':>9}")
    print(header, flush=True)

    report = dict(schema_version=1, peer="hf-transformers", tool="hf-transformers-generate",
                  torch=torch.__version__, transformers=transformers.__version__,
                  python=platform.python_version(), device=device_name, preset=args.preset,
                  model=f"synthetic:{args.preset}", dtype=args.dtype, attention=attention,
                  new_tokens=args.new_tokens, repeats=args.repeats, warmup=args.warmup,
                  modes=args.mode_list, seed=args.seed, sampling="greedy", stop_at_eos=False,
                  compile_mode=COMPILE_MODE, build_s=build_s,
                  timing=("device synchronised before every clock read; ttft: generate call to first token "
                          "(includes generate's set-up); decode_tok_s: (new_tokens - 1) / (last token - "
                          "first token); total: generate call to return"),
                  complete=False, results=[])
    for length in args.lengths:
        gen = torch.Generator(device=device).manual_seed(args.seed * 1_000_003 + length)
        ids = torch.randint(0, vocab, (1, length), device=device, generator=gen)
        for mode in args.mode_list:
            try:
                result = run_mode(model, ids, mode, args, device, sync, clock_cls, summary)
            except Exception as e:  # noqa: BLE001 - record and go on with the next mode/length
                kind = "out of memory" if is_oom(e) else "error"
                result = dict(length=length, mode=mode, new_tokens=args.new_tokens, error=f"{kind}: {one_line(e)}")
                print(f"{length:>7} {mode:>14} {kind}; skipped ({one_line(e, 160)})", flush=True)
                reset_compile_state(model, device)
                report["results"].append(result)
                continue
            report["results"].append(result)
            s = result["summary"]
            tok_s = f"{s['decode_tok_s']['median']:.1f}" if s["decode_tok_s"] else "—"
            print(f"{length:>7} {mode:>14} {result['compile']:>9} {fmt_range(s['ttft_ms']):>28} "
                  f"{tok_s:>12} {fmt_range(s['total_ms']):>29} {result['warmup_s']:>9.1f}", flush=True)
            if result.get("graphs_compiled_in_measured_runs"):
                print(f"{length:>7} {mode:>14} note: {result['graphs_compiled_in_measured_runs']} graph(s) "
                      f"compiled during the measured runs", flush=True)
        del ids
        reset_compile_state(model, device)
        if args.json:
            write_json(args.json, report)
    report["complete"] = True
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
