#!/usr/bin/env python3
"""Writes the scorer variants compared in docs/fidelity.md as schedule TOMLs and prints the
comma list of contenders to pass to `sdtp eval ... --schedule`.

Every variant has a preset's stages (configs/keepNN.toml: after layers 4, 7, ..., 25) and one
scorer setting. Usage:
    scripts/scorer_variants.py OUT_DIR [--keep 0.9,0.7] [--grid dev|probe|finalists|report]
        [--predictor predictors/smollm2-135m-keep09.safetensors]
- dev: the [attention] grid searched on the dev seed (names like k09-w32-max-p7-c1.0);
- probe: the CPU probe's leads (pool 31, carry 0.9), run on RULER on the dev seed;
- finalists: the best of dev, run on RULER on the dev seed;
- sentences: whole-sentence scoring (`sentences = true`) against the pool-31 default before
  it, run on RULER on the dev seed;
- relative: the default (pool 15 + sentences) with the neighbourhood-relative rank
  (`relative = W`) at several widths and depths (`relative_depth`), run on RULER, passkey
  and agreement on the dev seed;
- question: the default with `question_overlap = true`, run on RULER, passkey and agreement
  on the dev seed against the presets;
- components: the default and one setting changed at a time (8K passkey losses);
- first: the default and the relative rank at the first stage only, at three widths;
- tokens: the default against tokens ranked alone (no whole sentences) at pools 7, 15 and 31,
  the question overlap still a whole sentence's floor;
- cost: the default, the default with early relative ranks and the bare score read, for
  `sdtp profile prefill` (with the report grid's random contender: the scorer's own time);
- report: for each keep ratio, the preset itself (keepNN, whose [attention] is the chosen
  default) and the same stages with the scorer before [attention] existed (legacy: the whole
  protected tail, mean over heads, no pooling, no carry), the shipped learned predictor, norm
  and random.
"""
import argparse
import os

LAYERS = [4, 7, 10, 13, 16, 19, 22, 25]

# (window, heads, pool, carry[, sentences[, relative[, relative_depth[, question_overlap]]]]);
# window 0 = the protected tail. Grids written before a setting existed leave it out: no
# sentences, relative 0 (off), relative_depth 1, no question overlap.
LEGACY = (0, "mean", 1, 0.0)
GRIDS = {
    "dev": [
        LEGACY,
        (32, "max", 7, 0.0),
        (32, "mean", 7, 1.0),
        (32, "max", 1, 1.0),
        (32, "max", 3, 1.0),
        (32, "max", 7, 1.0),
        (32, "max", 7, 0.5),
        (32, "max", 7, 0.9),
        (16, "max", 7, 1.0),
        (64, "max", 7, 1.0),
        (32, "max", 15, 1.0),
    ],
    # the CPU probe's leads (docs/fidelity.md): wider pooling and a partial carry
    "probe": [
        (32, "max", 15, 1.0),
        (32, "max", 31, 1.0),
        (32, "max", 15, 0.9),
        (32, "max", 31, 0.9),
        (64, "max", 31, 1.0),
    ],
    "sentences": [
        (32, "max", 31, 1.0, False),
        (32, "max", 31, 1.0, True),
        (32, "max", 15, 1.0, True),
        (32, "max", 63, 1.0, True),
        (32, "max", 1, 1.0, True),
    ],
    # relative ranks (width, share of the depth whose stages use them)
    "relative": [
        (32, "max", 15, 1.0, True, 0),
        (32, "max", 15, 1.0, True, 255, 1.0),
        (32, "max", 15, 1.0, True, 255, 0.34),
        (32, "max", 15, 1.0, True, 255, 0.25),
        (32, "max", 15, 1.0, True, 63, 0.34),
        (32, "max", 15, 1.0, True, 1023, 0.34),
    ],
    # the question's rare tokens as a floor on a sentence's rank (`question_overlap`), alone
    # and with early relative ranks
    "overlap": [
        (32, "max", 15, 1.0, True, 0),
        (32, "max", 15, 1.0, True, 0, 1.0, True),
        (32, "max", 15, 1.0, True, 255, 0.34, True),
    ],
    # question_overlap after its depth-1 fix (rarity cut at max(4, n / 100) occurrences; a
    # sentence running into the protected tail counts whole): measured against the presets
    "question": [
        (32, "max", 15, 1.0, True, 0, 1.0, True),
    ],
    # what the scorer's own time is made of (profile prefill): the default, the same with
    # relative ranks at the early stages, and the bare read (no pooling, sentences or carry)
    "cost": [
        (32, "max", 15, 1.0, True),
        (32, "max", 15, 1.0, True, 255, 0.34),
        (32, "max", 1, 0.0, False),
    ],
    # the preset default and one component changed at a time: which part of the attention
    # scorer loses 8K passkeys whose key it keeps (depth 0.75)
    "components": [
        (32, "max", 15, 1.0, True, 0, 1.0, True),
        (32, "max", 15, 1.0, False, 0, 1.0, True),
        (32, "max", 1, 1.0, True, 0, 1.0, True),
        (128, "max", 15, 1.0, True, 0, 1.0, True),
        (32, "max", 15, 0.0, True, 0, 1.0, True),
        (32, "mean", 15, 1.0, True, 0, 1.0, True),
        (32, "max", 15, 1.0, True, 255, 0.34, True),
    ],
    # the preset default and the relative rank at the first stage only (a 30/32-layer model's
    # layer 4 is under 15% of the depth): the 8K passkeys lost at depth 0.75 follow a hole the
    # first stage cuts in the haystack (docs/fidelity.md)
    "first": [
        (32, "max", 15, 1.0, True, 0, 1.0, True),
        (32, "max", 15, 1.0, True, 255, 0.15, True),
        (32, "max", 15, 1.0, True, 127, 0.15, True),
        (32, "max", 15, 1.0, True, 511, 0.15, True),
    ],
    # the preset default against tokens ranked alone (`sentences = false`) at three pool
    # widths, the question overlap still floored by whole sentences: whole sentences cost the
    # agreement KL (a sentence kept whole spends budget single tokens elsewhere used)
    "tokens": [
        (32, "max", 15, 1.0, True, 127, 0.15, True),
        (32, "max", 7, 1.0, False, 127, 0.15, True),
        (32, "max", 15, 1.0, False, 127, 0.15, True),
        (32, "max", 31, 1.0, False, 127, 0.15, True),
    ],
    "finalists": [
        LEGACY,
        (32, "max", 7, 1.0),
        (32, "max", 15, 1.0),
        (16, "max", 7, 1.0),
        (16, "max", 15, 1.0),
    ],
}


def unpack(attention):
    return (tuple(attention) + (False, 0, 1.0, False)[len(attention) - 4 :])[:8]


def toml(name, keep, scorer, attention=None, predictor=None):
    stages = ", ".join(f"{{ layer = {l}, keep_ratio = {keep} }}" for l in LAYERS)
    text = f'name = "{name}"\nscorer = "{scorer}"\n'
    if predictor:
        text += f'predictor = "{os.path.abspath(predictor)}"\n'
    text += f"stages = [ {stages} ]\n"
    if attention:
        window, heads, pool, carry, sentences, relative, depth, overlap = unpack(attention)
        text += (
            f'\n[attention]\nwindow = {window}\nheads = "{heads}"\n'
            f"pool = {pool}\ncarry = {carry}\nsentences = {str(sentences).lower()}\n"
            f"relative = {relative}\nrelative_depth = {depth}\n"
            f"question_overlap = {str(overlap).lower()}\n"
        )
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--keep", default="0.9,0.7")
    ap.add_argument("--grid", default="dev", choices=sorted(GRIDS) + ["report"])
    ap.add_argument("--predictor", default="predictors/smollm2-135m-keep09.safetensors")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    contenders = []

    def write(name, text):
        path = os.path.join(args.out, name + ".toml")
        with open(path, "w") as f:
            f.write(text)
        contenders.append(path)

    for keep in [float(k) for k in args.keep.split(",")]:
        tag = f"k{round(keep * 10):02d}"
        if args.grid == "report":
            preset = f"keep{round(keep * 10):02d}"
            contenders.append(preset)
            write(f"{preset}-legacy", toml(f"{preset}-legacy", keep, "attention", LEGACY))
            write(f"{preset}-learned", toml(f"{preset}-learned", keep, "learned", predictor=args.predictor))
            for scorer in ("norm", "random"):
                write(f"{preset}-{scorer}", toml(f"{preset}-{scorer}", keep, scorer))
            continue
        for attention in GRIDS[args.grid]:
            window, heads, pool, carry, sentences, relative, depth, overlap = unpack(attention)
            name = f"{tag}-w{window}-{heads}-p{pool}-c{carry:.1f}" + ("-s" if sentences else "")
            name += f"-r{relative}-d{depth:g}" if relative else ""
            name += "-q" if overlap else ""
            write(name, toml(name, keep, "attention", attention))
    print(",".join(contenders))


if __name__ == "__main__":
    main()
