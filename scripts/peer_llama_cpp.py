#!/usr/bin/env python3
"""The side-by-side table of scripts/peer_llama_cpp.sh: llama-bench against sdtp.

Reads, from the --work folder, llama_bench_pp.json and llama_bench_tg.json (`llama-bench -o
json`) and sdtp.json (`sdtp profile end2end --json`, schema in docs/profile.md); any of them
may be missing (the script's --skip-*), and the cells that need it are then empty. Writes
peer.json and peer.md into the same folder (through a temporary file and a rename) and prints
the markdown to stdout. Python 3 standard library only.

Rows:
- prefill L: llama-bench pp<L> against sdtp's unpruned (baseline) prefill; ratio = llama.cpp
  time / sdtp time (> 1: sdtp faster).
- keep09 TTFT L: sdtp's keep09 time to first token against llama-bench pp<L>; ratio = sdtp /
  llama.cpp (target <= 0.7).
- decode after D: sdtp baseline decode tokens/s after a D-token prompt against llama-bench
  tg<N> at depth D; ratio = sdtp / llama.cpp (> 1: sdtp faster).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from datetime import datetime, timezone

KEEP_MODE = "keep09"
TTFT_TARGET = 0.7


def load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_atomic(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def llama_test(entry):
    """One llama-bench test: seconds (median, avg, sd of the samples) and tokens/s."""
    samples_s = [ns / 1e9 for ns in entry.get("samples_ns") or []]
    samples_ts = list(entry.get("samples_ts") or [])
    return {
        "n_prompt": entry.get("n_prompt"),
        "n_gen": entry.get("n_gen"),
        "n_depth": entry.get("n_depth", 0),
        "repeats": len(samples_s),
        "seconds_median": statistics.median(samples_s) if samples_s else entry["avg_ns"] / 1e9,
        "seconds_avg": entry["avg_ns"] / 1e9,
        "seconds_sd": entry.get("stddev_ns", 0) / 1e9,
        "tok_s_median": statistics.median(samples_ts) if samples_ts else entry["avg_ts"],
        "tok_s_avg": entry["avg_ts"],
        "tok_s_sd": entry.get("stddev_ts", 0.0),
        "samples_s": samples_s,
    }


def sdtp_result(report, length, mode):
    if report is None:
        return None
    for r in report["results"]:
        if r["length"] == length and r["mode"] == mode:
            return r
    return None


def med(summary):
    return None if summary is None else summary["median"]


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(v, digits=3):
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:.1f}"
    if abs(v) >= 10:
        return f"{v:.2f}"
    return f"{v:.{digits}f}"


def fmt_pm(avg, sd, median, digits=3):
    if avg is None:
        return "—"
    return f"{fmt(median, digits)} (avg {fmt(avg, digits)} ± {fmt(sd, digits)})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--source-model", required=True)
    ap.add_argument("--requant", default="")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--lengths", required=True)
    ap.add_argument("--new-tokens", type=int, required=True)
    ap.add_argument("--decode-depth", type=int, required=True)
    ap.add_argument("--depth-mode", default="n-depth")
    ap.add_argument("--repeats", type=int, required=True)
    ap.add_argument("--llama-cpp-python", required=True)
    ap.add_argument("--llama-commit", default="unknown")
    ap.add_argument("--sdist-sha256", default="unknown")
    ap.add_argument("--build-seconds", default="")
    ap.add_argument("--sdtp-head", default="unknown")
    ap.add_argument("--llama-bench-version", default="")
    args = ap.parse_args()

    lengths = [int(x) for x in args.lengths.split(",")]
    pp_raw = load(os.path.join(args.work, "llama_bench_pp.json"))
    tg_raw = load(os.path.join(args.work, "llama_bench_tg.json"))
    sdtp = load(os.path.join(args.work, "sdtp.json"))

    pp = {}
    for e in pp_raw or []:
        if e.get("n_gen", 0) == 0 and e.get("n_prompt", 0) > 0 and e.get("n_depth", 0) == 0:
            pp[e["n_prompt"]] = llama_test(e)
    tg = None
    for e in tg_raw or []:
        if e.get("n_prompt", 0) == 0 and e.get("n_gen", 0) == args.new_tokens:
            tg = llama_test(e)
    first = (pp_raw or tg_raw or [{}])[0]

    # Each tool's record of what it ran on, checked against what was asked.
    warnings = []
    for name, raw in (("llama_bench_pp.json", pp_raw), ("llama_bench_tg.json", tg_raw)):
        for e in raw or []:
            if e.get("n_threads") != args.threads:
                warnings.append(f"{name}: llama-bench ran {e.get('n_threads')} threads, not {args.threads}")
            if os.path.basename(e.get("model_filename", "")) != os.path.basename(args.model):
                warnings.append(f"{name} is of {e.get('model_filename')}, not {args.model}")
    if tg is not None and args.depth_mode == "n-depth" and tg["n_depth"] != args.decode_depth:
        warnings.append(f"llama-bench decode ran at depth {tg['n_depth']}, not {args.decode_depth}")
    if args.depth_mode != "n-depth":
        warnings.append("this llama-bench has no --n-depth: its decode row is on an empty context")
    if sdtp is not None:
        if sdtp.get("cpu_threads") != args.threads:
            warnings.append(f"sdtp ran {sdtp.get('cpu_threads')} threads, not {args.threads}")
        if os.path.basename(sdtp["model"]["name"]) != os.path.basename(args.model):
            warnings.append(f"sdtp.json is of {sdtp['model']['name']}, not {args.model}")
        if sdtp["settings"]["new_tokens"] != args.new_tokens:
            warnings.append(f"sdtp decoded {sdtp['settings']['new_tokens']} tokens, not {args.new_tokens}")

    rows = []
    for L in lengths:
        p = pp.get(L)
        base = sdtp_result(sdtp, L, "baseline")
        keep = sdtp_result(sdtp, L, KEEP_MODE)
        s_ms = med(base["summary"]["prefill_ms"]) if base else None
        s_s = s_ms / 1e3 if s_ms is not None else None
        s_ts = med(base["summary"]["prefill_tok_s"]) if base else None
        rows.append({
            "row": f"prefill {L}",
            "kind": "prefill",
            "length": L,
            "llama": p,
            "sdtp": None if base is None else {
                "mode": "baseline",
                "seconds_median": s_s,
                "tok_s_median": s_ts,
                "ttft_seconds_median": med(base["summary"]["ttft_ms"]) / 1e3,
                "repeats": base["summary"]["prefill_ms"]["n"],
            },
            "ratio": ratio(p and p["seconds_median"], s_s),
            "ratio_meaning": "llama.cpp seconds / sdtp seconds (> 1: sdtp faster)",
        })
        k_s = med(keep["summary"]["ttft_ms"]) / 1e3 if keep else None
        rows.append({
            "row": f"{KEEP_MODE} TTFT {L}",
            "kind": "keep09_ttft",
            "length": L,
            "llama": p,
            "sdtp": None if keep is None else {
                "mode": KEEP_MODE,
                "ttft_seconds_median": k_s,
                "prefill_seconds_median": med(keep["summary"]["prefill_ms"]) / 1e3,
                "tok_s_median": L / k_s if k_s else None,
                "final_tokens": keep["kept"]["final_tokens"],
                "final_ratio": keep["kept"]["final_ratio"],
                "repeats": keep["summary"]["ttft_ms"]["n"],
            },
            "ratio": ratio(k_s, p and p["seconds_median"]),
            "ratio_meaning": f"sdtp keep09 TTFT / llama.cpp prefill seconds (target <= {TTFT_TARGET})",
            "meets_target": None if ratio(k_s, p and p["seconds_median"]) is None
            else ratio(k_s, p and p["seconds_median"]) <= TTFT_TARGET,
        })
    D = args.decode_depth
    base_d = sdtp_result(sdtp, D, "baseline")
    d_ts = med(base_d["summary"]["decode_tok_s"]) if base_d else None
    rows.append({
        "row": f"decode after {D}",
        "kind": "decode",
        "length": D,
        "new_tokens": args.new_tokens,
        "llama": tg,
        "sdtp": None if base_d is None else {
            "mode": "baseline",
            "tok_s_median": d_ts,
            "decode_seconds_median": med(base_d["summary"]["decode_ms"]) / 1e3,
            "repeats": base_d["summary"]["decode_ms"]["n"],
        },
        "ratio": ratio(d_ts, tg and tg["tok_s_median"]),
        "ratio_meaning": "sdtp tokens/s / llama.cpp tokens/s (> 1: sdtp faster)",
    })

    size = os.path.getsize(args.model)
    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "threads": args.threads,
        "cpu": cpu_model(),
        "cpu_llama_bench": first.get("cpu_info"),
        "logical_cpus": os.cpu_count(),
        "loadavg_at_end": loadavg(),
        "model_file": os.path.basename(args.model),
        "model_path": os.path.abspath(args.model),
        "model_bytes": size,
        "requantized_from": os.path.basename(args.source_model) if args.requant else None,
        "requant_type": args.requant or None,
        "llama_bench": {
            "llama_cpp_python": args.llama_cpp_python,
            "llama_cpp_commit": args.llama_commit,
            "version": args.llama_bench_version or None,
            "build_commit": first.get("build_commit"),
            "build_number": first.get("build_number"),
            "sdist_sha256": args.sdist_sha256,
            "cold_build_seconds": int(args.build_seconds) if args.build_seconds.isdigit() else None,
            "backends": first.get("backends"),
            "model_type": first.get("model_type"),
            "n_batch": first.get("n_batch"),
            "n_ubatch": first.get("n_ubatch"),
            "flash_attn": first.get("flash_attn"),
            "type_k": first.get("type_k"),
            "type_v": first.get("type_v"),
            "decode_depth_flag": args.depth_mode,
        },
        "sdtp": None if sdtp is None else {
            "version": sdtp.get("sdtp_version"),
            "binary_commit": sdtp.get("git_commit"),
            "repo_head": args.sdtp_head,
            "device": sdtp.get("device"),
            "dtype": sdtp.get("dtype"),
            "weights": sdtp["model"].get("weights"),
            "weight_kinds": sdtp["model"].get("weight_kinds"),
            "cpu_threads": sdtp.get("cpu_threads"),
            "warmup": sdtp["settings"].get("warmup"),
            "keep09_scorer": next((s.get("scorer") for s in sdtp.get("schedules", [])
                                   if s.get("mode") == KEEP_MODE), None),
        },
        "settings": {
            "lengths": lengths,
            "new_tokens": args.new_tokens,
            "decode_depth": D,
            "repeats": args.repeats,
        },
        "warnings": warnings,
    }
    report = {"info": info, "rows": rows}

    md = render(info, rows)
    write_atomic(os.path.join(args.work, "peer.json"), json.dumps(report, indent=2) + "\n")
    write_atomic(os.path.join(args.work, "peer.md"), md)
    return 0


def render(info, rows):
    lb = info["llama_bench"]
    sd = info["sdtp"]
    out = []
    out.append(f"# sdtp vs llama.cpp (llama-bench), CPU, {info['threads']} threads")
    out.append("")
    model = f"`{info['model_file']}` ({info['model_bytes']:,} bytes, {info['model_bytes'] / 2**20:.1f} MiB)"
    if info["requant_type"]:
        model += f", requantized to {info['requant_type']} from `{info['requantized_from']}`"
    out.append(f"- Model: {model}")
    out.append(f"- CPU: {info['cpu']} ({info['logical_cpus']} logical CPUs), {info['threads']} threads for both tools; "
               f"load average at the end {info['loadavg_at_end']}")
    out.append(f"- llama.cpp: commit {lb['llama_cpp_commit']} (vendored in the llama-cpp-python "
               f"{lb['llama_cpp_python']} sdist; `llama-bench --version`: {lb['version'] or '?'}), "
               f"backends {lb['backends']}, "
               f"n_batch {lb['n_batch']}, n_ubatch {lb['n_ubatch']}, flash_attn {lb['flash_attn']}, "
               f"KV {lb['type_k']}/{lb['type_v']}; {info['settings']['repeats']} repetitions after 1 warm-up")
    if sd:
        kinds = ", ".join(f"{k} ×{n}" for k, n in (sd["weight_kinds"] or {}).items())
        out.append(f"- sdtp: {sd['version']} at commit {sd['binary_commit']} (repository HEAD "
                   f"{sd['repo_head']}), {sd['device']} {sd['dtype']}, {sd['weights']} weights [{kinds}], "
                   f"RAYON_NUM_THREADS={sd['cpu_threads']}; {info['settings']['repeats']} repetitions "
                   f"after {sd['warmup']} warm-up; keep09 scorer {sd['keep09_scorer']}")
    else:
        out.append("- sdtp: not run")
    out.append(f"- Medians over repetitions; llama-bench's own avg ± stddev in parentheses. "
               f"Decode: {info['settings']['new_tokens']} tokens after a {info['settings']['decode_depth']}-token "
               f"prompt (llama-bench tg{info['settings']['new_tokens']} -d {info['settings']['decode_depth']}; "
               f"sdtp: the generated tokens after the first over the decode time).")
    out.append("")
    out.append("| row | llama.cpp t/s | llama.cpp s | sdtp s | sdtp t/s | ratio | ratio means |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        l = r["llama"]
        s = r["sdtp"]
        if r["kind"] == "prefill":
            cells = [
                fmt_pm(l and l["tok_s_avg"], l and l["tok_s_sd"], l and l["tok_s_median"], 1) if l else "—",
                fmt_pm(l and l["seconds_avg"], l and l["seconds_sd"], l and l["seconds_median"]) if l else "—",
                fmt(s and s["seconds_median"]),
                fmt(s and s["tok_s_median"], 1),
                f"**{fmt(r['ratio'], 2)}**" if r["ratio"] is not None else "—",
                "llama s / sdtp s, > 1: sdtp faster",
            ]
        elif r["kind"] == "keep09_ttft":
            target = "" if r.get("meets_target") is None else (" ✓" if r["meets_target"] else " ✗")
            cells = [
                fmt(l and l["tok_s_median"], 1) if l else "—",
                fmt(l and l["seconds_median"]) if l else "—",
                fmt(s and s["ttft_seconds_median"]),
                fmt(s and s["tok_s_median"], 1),
                f"**{fmt(r['ratio'], 2)}**{target}" if r["ratio"] is not None else "—",
                f"sdtp keep09 TTFT / llama prefill s, target ≤ {TTFT_TARGET}"
                + (f" (keeps {s['final_tokens']} tokens at the last layer)" if s else ""),
            ]
        else:
            cells = [
                fmt_pm(l and l["tok_s_avg"], l and l["tok_s_sd"], l and l["tok_s_median"], 1) if l else "—",
                fmt_pm(l and l["seconds_avg"], l and l["seconds_sd"], l and l["seconds_median"]) if l else "—",
                fmt(s and s["decode_seconds_median"]),
                fmt(s and s["tok_s_median"], 1),
                f"**{fmt(r['ratio'], 2)}**" if r["ratio"] is not None else "—",
                "sdtp t/s / llama t/s, > 1: sdtp faster",
            ]
        out.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    if info["warnings"]:
        out.append("")
        for w in info["warnings"]:
            out.append(f"- **Warning:** {w}")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
