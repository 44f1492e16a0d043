#!/usr/bin/env python3
"""Kernel-level check and timing of kernels/flash_attn.cu against PyTorch, on the GPU machine.

`build` (here, with scripts/build_cuda.sh's CUDA_HOME): compiles the kernel file into one cubin
holding the production entry points plus tiling variants (warps x m16-tiles-per-warp x keys per
tile), and, with --baseline REV, the kernel of an older commit for comparison.
`run` (there; needs torch and cupy): for every variant, the causal output and row log-sum-exp
against an f32 PyTorch reference on random inputs (tile edges, GQA, decode and chunk shapes,
cache views with spare capacity), the fused tail scores against softmax column sums, then the
time of each variant and of torch SDPA (is_causal) at the Llama-2-7B attention shape, median of
--repeats CUDA-event timings after warm-up, as ms and TFLOP/s (causal FLOPs, 4·d per visible
query-key pair).

  python3 scripts/flash_kernel_bench.py build --out gpu/flash_variants.cubin [--baseline c94dd28]
  python3 scripts/flash_kernel_bench.py run --cubin gpu/flash_variants.cubin [--baseline-cubin ...]
"""

import argparse
import math
import os
import subprocess
import sys
import tempfile

# name: (warps, m16 tiles per warp, keys per tile)
VARIANTS = {
    "w4m2n64": (4, 2, 64),
    "w4m2n32": (4, 2, 32),
    "w8m1n64": (8, 1, 64),
    "w4m1n64": (4, 1, 64),
    "w8m2n32": (8, 2, 32),
}


def wrapper_source(kernel_path):
    lines = ["#define SDTP_FLASH_NO_EXPORTS", f'#include "{os.path.abspath(kernel_path)}"']
    for name, (nw, mt, bn) in VARIANTS.items():
        for d in (64, 128):
            lines.append(
                f'extern "C" __global__ void __launch_bounds__({nw * 32}) v_{name}_d{d}('
                "const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, "
                "__nv_bfloat16* out, int t, int n, int heads, int groups, "
                "long long ks, long long vs, float sl) {"
                f" flash_attn_fwd<__nv_bfloat16, {d}, {nw}, {mt}, {bn}, true>(q, k, v, out, nullptr,"
                f" t, n, heads, groups, (long long)t * {d}, ks, vs, sl); }}")
    return "\n".join(lines) + "\n"


def build(args):
    nvcc = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "variants.cu")
        with open(src, "w") as f:
            f.write(wrapper_source(args.kernel))
        cmd = [nvcc, "-cubin", "-arch=sm_90", "-O3", "--std=c++17", "-Xptxas", "-v", src, "-o", args.out]
        subprocess.run(cmd, check=True)
        prod = args.out.replace(".cubin", "_prod.cubin")
        subprocess.run([nvcc, "-cubin", "-arch=sm_90", "-O3", "--std=c++17", args.kernel, "-o", prod], check=True)
        if args.baseline:
            old = os.path.join(tmp, "old.cu")
            with open(old, "w") as f:
                f.write(subprocess.run(["git", "show", f"{args.baseline}:kernels/flash_attn.cu"],
                                       check=True, capture_output=True, text=True).stdout)
            base = args.out.replace(".cubin", "_baseline.cubin")
            subprocess.run([nvcc, "-cubin", "-arch=sm_90", "-O3", "--std=c++17", old, "-o", base], check=True)


def run(args):
    import cupy as cp
    import numpy as np
    import torch
    import torch.nn.functional as F

    dev = torch.device("cuda")
    mod = cp.RawModule(path=args.cubin)
    prod = cp.RawModule(path=args.cubin.replace(".cubin", "_prod.cubin"))
    base_path = args.cubin.replace(".cubin", "_baseline.cubin")
    base = cp.RawModule(path=base_path) if os.path.exists(base_path) else None
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "cupy", cp.__version__)

    def ptr(x):
        return np.uint64(x.data_ptr()) if x is not None else np.uint64(0)

    def launcher(name, nw, mt, bn, d, module):
        fn = module.get_function(name)
        smem = (nw * 16 * mt + 2 * bn) * (d + 8) * 2
        fn.max_dynamic_shared_size_bytes = smem
        bm = nw * 16 * mt

        def launch(q, k, v, out, t, n, heads, groups, ks, vs):
            scale_log2 = np.float32(1.0 / math.sqrt(d) * math.log2(math.e))
            fn((heads, (t + bm - 1) // bm), (nw * 32,),
               (ptr(q), ptr(k), ptr(v), ptr(out), np.int32(t), np.int32(n),
                np.int32(heads), np.int32(groups), np.int64(ks), np.int64(vs), scale_log2),
               shared_mem=smem)
        return launch

    def baseline_launcher(d):
        fn = base.get_function(f"flash_attn_bf16_d{d}")

        def launch(q, k, v, out, t, n, heads, groups, ks, vs):
            scale_log2 = np.float32(1.0 / math.sqrt(d) * math.log2(math.e))
            fn(((t + 63) // 64, heads), (128,),
               (ptr(q), ptr(k), ptr(v), ptr(out), np.int32(t), np.int32(n), np.int32(heads),
                np.int32(groups), np.int64(ks), np.int64(vs), scale_log2))
        return launch

    variants = {}
    for name, (nw, mt, bn) in VARIANTS.items():
        variants[name] = {d: launcher(f"v_{name}_d{d}", nw, mt, bn, d, mod) for d in (64, 128)}
    variants["prod"] = {d: launcher(f"flash_attn_bf16_d{d}", 4, 2, 64, d, prod) for d in (64, 128)}
    if base is not None:
        variants["baseline"] = {d: baseline_launcher(d) for d in (64, 128)}

    def reference(q, k, v, t, n):
        heads, kvh = q.shape[0], k.shape[0]
        kk = k.float().repeat_interleave(heads // kvh, 0)
        vv = v.float().repeat_interleave(heads // kvh, 0)
        s = q.float() @ kk.transpose(1, 2) / math.sqrt(q.shape[-1])
        rows = torch.arange(n - t, n, device=dev)[:, None]
        cols = torch.arange(n, device=dev)[None, :]
        s = s.masked_fill(cols > rows, float("-inf"))
        lse2 = torch.logsumexp(s, -1) / math.log(2)
        p = s.softmax(-1)
        return (p @ vv).transpose(0, 1), lse2, p  # out (t, heads, d)

    # ---- correctness
    worst = {}
    shapes = [(1, 1), (2, 2), (17, 17), (63, 63), (64, 64), (65, 65), (127, 127), (129, 129),
              (300, 300), (1000, 1000), (4096, 4096), (1, 4096), (1, 77), (5, 200), (100, 1500)]
    failures = 0
    for d in (64, 128):
        for (t, n) in shapes:
            heads, kvh = 8, 2
            torch.manual_seed(t * 7919 + n + d)
            q = torch.randn(heads, t, d, device=dev).bfloat16()
            cap = n + 24
            kb = torch.randn(kvh, cap, d, device=dev).bfloat16()
            vb = torch.randn(kvh, cap, d, device=dev).bfloat16()
            ref, ref_lse, probs = reference(q, kb[:, :n], vb[:, :n], t, n)
            for name, fns in variants.items():
                out = torch.full((t, heads, d), float("nan"), device=dev, dtype=torch.bfloat16)
                fns[d](q, kb, vb, out, t, n, heads, heads // kvh, cap * d, cap * d)
                torch.cuda.synchronize()
                err = (out.float() - ref).abs().max().item()
                rel = ((out.float() - ref).norm() / ref.norm()).item()
                ok = math.isfinite(err) and err < 4e-2 and rel < 1e-2
                worst[name] = max(worst.get(name, 0.0), err)
                if not ok:
                    failures += 1
                    print(f"FAIL {name} d={d} t={t} n={n} max_abs={err:.3g} rel={rel:.3g}")
            # fused tail scores (production module)
            for tail in sorted({1, max(1, math.ceil(0.1 * t)), t}):
                sl = np.float32(1.0 / math.sqrt(d) * math.log2(math.e))
                lse = torch.full((heads, tail), float("nan"), device=dev)
                fn = prod.get_function(f"tail_lse_bf16_d{d}")
                fn.max_dynamic_shared_size_bytes = 256 * (d + 8) * 2
                fn((heads, (tail + 127) // 128), (128,),
                   (ptr(q), ptr(kb), ptr(lse), np.int32(t), np.int32(tail), np.int32(n), np.int32(heads),
                    np.int32(heads // kvh), np.int64(cap * d), sl), shared_mem=256 * (d + 8) * 2)
                torch.cuda.synchronize()
                lse_err = (lse - ref_lse[:, t - tail:]).abs().max().item()
                worst["lse"] = max(worst.get("lse", 0.0), lse_err)
                if not (math.isfinite(lse_err) and lse_err < 1e-2):
                    failures += 1
                    print(f"FAIL lse d={d} t={t} n={n} tail={tail} max_abs={lse_err:.3g}")
                scores = torch.zeros(n, device=dev)
                fn = prod.get_function(f"tail_scores_bf16_d{d}")
                fn.max_dynamic_shared_size_bytes = 192 * (d + 8) * 2
                fn((heads, (n + 63) // 64), (128,),
                   (ptr(q), ptr(kb), ptr(lse), np.int64(tail), np.float32(1.0), ptr(scores),
                    np.int32(t), np.int32(n), np.int32(tail),
                    np.int32(heads // kvh), np.int64(cap * d), sl),
                   shared_mem=192 * (d + 8) * 2)
                torch.cuda.synchronize()
                want = probs[:, t - tail:, :].sum(dim=(0, 1))
                err = ((scores - want).abs().max() / want.abs().max()).item()
                worst["tail"] = max(worst.get("tail", 0.0), err)
                if not (math.isfinite(err) and err < 2e-2):
                    failures += 1
                    print(f"FAIL tail d={d} t={t} n={n} tail={tail} rel_max={err:.3g}")
    print("correctness: worst max-abs per variant", {k: f"{v:.2e}" for k, v in worst.items()},
          "failures", failures)

    # ---- timing at the Llama-2-7B shape (32 heads, d 128, no GQA) and Llama-3 GQA (32/8)
    def bench(fn, reps):
        for _ in range(3):
            fn()
        times = []
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        times.sort()
        return times[len(times) // 2], times[0], times[-1]

    rows = []
    names = list(variants) + ["sdpa"]
    print(f"{'shape':>14} " + " ".join(f"{n:>16}" for n in names))
    for kvh in (32, 8):
        for n in [int(x) for x in args.lengths.split(",")]:
            heads, d = 32, 128
            q = torch.randn(heads, n, d, device=dev).bfloat16()
            k = torch.randn(kvh, n, d, device=dev).bfloat16()
            v = torch.randn(kvh, n, d, device=dev).bfloat16()
            out = torch.empty((n, heads, d), device=dev, dtype=torch.bfloat16)
            flops = 4 * d * heads * n * (n + 1) / 2
            reps = args.repeats if n <= 16384 else max(3, args.repeats // 4)
            cells = []
            for name in names:
                if name == "sdpa":
                    qq, kk, vv = q[None], k[None], v[None]
                    fn = lambda: F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, enable_gqa=kvh != heads)
                else:
                    fn = lambda f=variants[name][d]: f(q, k, v, out, n, n, heads, heads // kvh, n * d, n * d)
                med, lo, hi = bench(fn, reps)
                cells.append(f"{med:7.2f}ms {flops / med / 1e9:4.0f}T")
                rows.append((kvh, n, name, med, lo, hi, flops / med / 1e9))
            print(f"kv{kvh:>2} n={n:>6} " + " ".join(f"{c:>16}" for c in cells), flush=True)
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("kv_heads,length,variant,median_ms,min_ms,max_ms,tflops\n")
            for r in rows:
                f.write(",".join(str(x) for x in r) + "\n")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--kernel", default="kernels/flash_attn.cu")
    b.add_argument("--out", default="gpu/flash_variants.cubin")
    b.add_argument("--baseline", help="git revision whose kernel to compile for comparison")
    r = sub.add_parser("run")
    r.add_argument("--cubin", default="gpu/flash_variants.cubin")
    r.add_argument("--lengths", default="1024,2048,4096,8192,16384,32768")
    r.add_argument("--repeats", type=int, default=20)
    r.add_argument("--csv")
    args = ap.parse_args()
    sys.exit(build(args) if args.cmd == "build" else run(args))


if __name__ == "__main__":
    main()
