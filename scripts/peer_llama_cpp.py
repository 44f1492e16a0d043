#!/usr/bin/env python3
"""The side-by-side table of scripts/peer_llama_cpp.sh: llama-bench against sdtp.

Reads, from the --work folder, llama_bench_pp.json and llama_bench_tg.json (`llama-bench -o
json`) and sdtp.json (`sdtp profile end2end --json`, schema in docs/profile.md); any of them
may be missing (the script's --skip-*), and the cells that need it are then empty. Writes
peer.json and peer.md into the same folder (through a temporary file and a rename). Python 3
standard library only.

`peer_llama_cpp.py check-context MODEL LONGEST NEW` checks, from the GGUF metadata, that the
longest prompt plus the new tokens fit the model's context (exit 2 with one line if not).

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
FLASH = {-1: "auto", 0: "off", 1: "on"}


def pct(v):
    return "—" if v is None else f"{v}%"


def reps(n):
    return f"{n} repetition" + ("" if n == 1 else "s")
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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600
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


def decode_from_pg(entries, depth, new_tokens):
    """Decode of `new_tokens` after `depth` prompt tokens for a llama-bench without --n-depth:
    its pg<depth,new_tokens> test (prompt then decode) minus its pp<depth> test."""
    pp = pg = None
    for e in entries:
        if e.get("n_prompt") == depth and e.get("n_gen") == 0:
            pp = llama_test(e)
        elif e.get("n_prompt") == depth and e.get("n_gen") == new_tokens:
            pg = llama_test(e)
    if pp is None or pg is None:
        return None
    med_s = pg["seconds_median"] - pp["seconds_median"]
    avg_s = pg["seconds_avg"] - pp["seconds_avg"]
    sd_s = (pg["seconds_sd"] ** 2 + pp["seconds_sd"] ** 2) ** 0.5
    if med_s <= 0 or avg_s <= 0:
        return None
    return {
        "n_prompt": 0,
        "n_gen": new_tokens,
        "n_depth": depth,
        "derived": f"pg{depth},{new_tokens} - pp{depth}",
        "repeats": min(pg["repeats"], pp["repeats"]),
        "seconds_median": med_s,
        "seconds_avg": avg_s,
        "seconds_sd": sd_s,
        "tok_s_median": new_tokens / med_s,
        "tok_s_avg": new_tokens / avg_s,
        "tok_s_sd": new_tokens / avg_s * sd_s / avg_s,
        "samples_s": [],
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


GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_metadata(path, wanted):
    """The metadata values named in `wanted` (a set of keys; `{arch}` in a key is filled in from
    general.architecture) of a GGUF file (version 2 or later), read without loading tensors."""
    import struct

    with open(path, "rb") as f:
        def read(fmt):
            size = struct.calcsize(fmt)
            data = f.read(size)
            if len(data) != size:
                raise ValueError("truncated GGUF header")
            return struct.unpack(fmt, data)[0]

        def read_str():
            return f.read(read("<Q")).decode("utf-8", "replace")

        def read_value(kind):
            if kind in GGUF_SCALARS:
                return read(GGUF_SCALARS[kind])
            if kind == 8:
                return read_str()
            if kind == 9:
                elem, n = read("<I"), read("<Q")
                if elem in GGUF_SCALARS:  # skip numeric arrays without decoding them
                    f.seek(n * struct.calcsize(GGUF_SCALARS[elem]), 1)
                    return None
                return [read_value(elem) for _ in range(n)] if elem != 8 else [read_str() for _ in range(n)]
            raise ValueError(f"unknown GGUF value type {kind}")

        if f.read(4) != b"GGUF":
            raise ValueError("not a GGUF file")
        if read("<I") < 2:
            raise ValueError("GGUF version 1 is not supported")
        read("<Q")  # tensor count
        found, arch = {}, None
        for _ in range(read("<Q")):
            key, kind = read_str(), read("<I")
            value = read_value(kind)
            if key == "general.architecture":
                arch = value
            found[key] = value
            keys = {k.replace("{arch}", arch) for k in wanted} if arch else None
            if keys and keys <= found.keys():
                break
        keys = {k.replace("{arch}", arch or "?") for k in wanted}
        return {**{k: found.get(k) for k in keys}, "general.architecture": arch}


def check_context(argv):
    """`peer_llama_cpp.py check-context MODEL LONGEST_PROMPT NEW_TOKENS`: exit 2 with one line
    when the prompt and the new tokens do not fit the model's context length."""
    model, longest, new_tokens = argv[0], int(argv[1]), int(argv[2])
    try:
        meta = gguf_metadata(model, {"{arch}.context_length"})
    except (OSError, ValueError) as e:
        print(f"peer_llama_cpp: error: --model: cannot read {model} as GGUF: {e}", file=sys.stderr)
        return 2
    arch = meta["general.architecture"]
    ctx = meta.get(f"{arch}.context_length")
    if ctx is not None and longest + new_tokens > ctx:
        print(f"peer_llama_cpp: error: a {longest}-token prompt plus {new_tokens} new tokens exceeds the "
              f"model's context of {ctx} tokens (see --help)", file=sys.stderr)
        return 2
    print(f"{arch} {ctx}")
    return 0


def main():
    if sys.argv[1:2] == ["check-context"]:
        return check_context(sys.argv[2:])
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
    ap.add_argument("--load-start", default="", help="/proc/loadavg's first three fields before the runs")
    ap.add_argument("--busy-before-llama", default="", help="%% of the CPUs busy just before llama-bench")
    ap.add_argument("--busy-before-sdtp", default="", help="%% of the CPUs busy just before sdtp")
    ap.add_argument("--other-during-llama", default="", help="%% of the CPUs other work took during llama-bench")
    ap.add_argument("--other-during-sdtp", default="", help="%% of the CPUs other work took during sdtp")
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
    if args.depth_mode == "pg":
        tg = decode_from_pg(tg_raw or [], args.decode_depth, args.new_tokens)
    else:
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
    if args.depth_mode == "pg":
        warnings.append(f"this llama-bench has no --n-depth: its decode is pg{args.decode_depth},{args.new_tokens} "
                        f"minus pp{args.decode_depth} (avg ± sd combined from the two)")
    elif args.depth_mode != "n-depth":
        warnings.append("this llama-bench has neither --n-depth nor -pg: its decode row is on an empty context")
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
        "cpu_busy_percent_before": {
            "llama_bench": int(args.busy_before_llama) if args.busy_before_llama.isdigit() else None,
            "sdtp": int(args.busy_before_sdtp) if args.busy_before_sdtp.isdigit() else None,
        },
        "cpu_other_percent_during": {
            "llama_bench": int(args.other_during_llama) if args.other_during_llama.isdigit() else None,
            "sdtp": int(args.other_during_sdtp) if args.other_during_sdtp.isdigit() else None,
        },
        "loadavg_at_start": [float(x) for x in args.load_start.split()] or None,
        "loadavg_at_end": loadavg(),
        "omp_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("OMP_", "GOMP_"))},
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
    # The share of the CPUs other work kept busy over 2 s just before each tool ran (the load
    # average lags by minutes and would also count the previous tool's threads).
    tool = {"llama_bench": "llama-bench", "sdtp": "sdtp"}
    busy = [f"{v}% of the CPUs busy just before {tool[k]}"
            for k, v in info["cpu_busy_percent_before"].items() if v is not None and v > 15]
    busy += [f"other work took {v}% of the CPUs while {tool[k]} ran"
             for k, v in info["cpu_other_percent_during"].items() if v is not None and v > 10]
    if busy:
        warnings.append(
            "the machine was not idle: " + ", ".join(busy)
            + "; other processes competed for the cores, so these timings are noisy (llama.cpp's OpenMP threads "
            "spin at barriers and suffer most when the cores are oversubscribed; OMP_WAIT_POLICY=passive eases "
            "that). Rerun on an idle machine.")
    report = {"info": info, "rows": rows}

    md = render(info, rows)
    write_atomic(os.path.join(args.work, "peer.json"), json.dumps(report, indent=2) + "\n")
    write_atomic(os.path.join(args.work, "peer.md"), md)
    return 0


def render(info, rows):
    lb = info["llama_bench"]
    sd = info["sdtp"]
    out = []
    out.append(f"# sdtp vs llama.cpp (llama-bench), CPU, {info['threads']} thread"
               + ("" if info["threads"] == 1 else "s"))
    out.append("")
    model = f"`{info['model_file']}` ({info['model_bytes']:,} bytes, {info['model_bytes'] / 2**20:.1f} MiB)"
    if info["requant_type"]:
        model += f", requantized to {info['requant_type']} from `{info['requantized_from']}`"
    out.append(f"- Model: {model}")
    omp = ", ".join(f"{k}={v}" for k, v in info["omp_env"].items())
    out.append(f"- CPU: {info['cpu']} ({info['logical_cpus']} logical CPUs), {info['threads']} thread"
               f"{'' if info['threads'] == 1 else 's'} for both tools; "
               f"other work on the CPUs just before / while llama-bench ran: "
               f"{pct(info['cpu_busy_percent_before']['llama_bench'])} / {pct(info['cpu_other_percent_during']['llama_bench'])}, "
               f"sdtp: {pct(info['cpu_busy_percent_before']['sdtp'])} / {pct(info['cpu_other_percent_during']['sdtp'])}"
               + (f"; {omp}" if omp else ""))
    out.append(f"- llama.cpp: commit {lb['llama_cpp_commit']} (vendored in the llama-cpp-python "
               f"{lb['llama_cpp_python']} sdist; `llama-bench --version`: {lb['version'] or '?'}), "
               f"backends {lb['backends']}, "
               f"n_batch {lb['n_batch']}, n_ubatch {lb['n_ubatch']}, "
               f"flash_attn {FLASH.get(lb['flash_attn'], lb['flash_attn'])}, "
               f"KV {lb['type_k']}/{lb['type_v']}; {reps(info['settings']['repeats'])} after 1 warm-up")
    if sd:
        kinds = ", ".join(f"{k} ×{n}" for k, n in (sd["weight_kinds"] or {}).items())
        out.append(f"- sdtp: {sd['version']} at commit {sd['binary_commit']} (repository HEAD "
                   f"{sd['repo_head']}), {sd['device']} {sd['dtype']}, {sd['weights']} weights [{kinds}], "
                   f"RAYON_NUM_THREADS={sd['cpu_threads']}; {reps(info['settings']['repeats'])} "
                   f"after {sd['warmup']} warm-up; keep09 scorer {sd['keep09_scorer']}")
    else:
        out.append("- sdtp: not run")
    n, d = info["settings"]["new_tokens"], info["settings"]["decode_depth"]
    how = {"n-depth": f"tg{n} -d {d}", "pg": f"-pg {d},{n} minus pp{d}"}.get(
        lb["decode_depth_flag"], f"tg{n} on an empty context")
    out.append(f"- Medians over repetitions; llama-bench's own avg ± stddev in parentheses. "
               f"Decode: {n} tokens after a {d}-token prompt (llama-bench {how}; "
               f"sdtp: the generated tokens after the first over the decode time).")
    out.append("")
    out.append("| row | llama.cpp t/s | llama.cpp s | sdtp s | sdtp t/s | ratio | ratio means |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        l = r["llama"]
        s = r["sdtp"]
        # llama-bench's median with its own avg ± sd, as rate and as time
        llama_cells = [
            fmt_pm(l["tok_s_avg"], l["tok_s_sd"], l["tok_s_median"], 1),
            fmt_pm(l["seconds_avg"], l["seconds_sd"], l["seconds_median"]),
        ] if l else ["—", "—"]
        if r["kind"] == "prefill":
            cells = llama_cells + [
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
            cells = llama_cells + [
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
