#!/usr/bin/env python3
"""Writes the attention-scorer variants compared in docs/fidelity.md as schedule TOMLs.

Each variant is a preset's stages (configs/keepNN.toml) with one [attention] setting; the
file name and schedule name say which, e.g. k09-w32-max-p7-c1.0. Usage:
    scripts/scorer_variants.py OUT_DIR [--keep 0.9,0.7] [--grid dev|final]
`dev` is the grid the defaults were chosen from (on the dev seed); `final` the few that the
report compares on the report seed.
"""
import argparse
import os

LAYERS = [4, 7, 10, 13, 16, 19, 22, 25]  # the keepNN presets, for 32 layers (30 as written)

# (window, heads, pool, carry); window 0 = the protected tail (the scorer before [attention]).
GRIDS = {
    "dev": [
        (0, "mean", 1, 0.0),
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
    "final": [
        (0, "mean", 1, 0.0),
        (32, "max", 7, 0.0),
    ],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--keep", default="0.9,0.7")
    ap.add_argument("--grid", default="dev", choices=sorted(GRIDS))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    paths = []
    for keep in [float(k) for k in args.keep.split(",")]:
        for window, heads, pool, carry in GRIDS[args.grid]:
            name = f"k{round(keep * 10):02d}-w{window}-{heads}-p{pool}-c{carry:.1f}"
            stages = ", ".join(f"{{ layer = {l}, keep_ratio = {keep} }}" for l in LAYERS)
            path = os.path.join(args.out, name + ".toml")
            with open(path, "w") as f:
                f.write(
                    f'name = "{name}"\nscorer = "attention"\nstages = [ {stages} ]\n\n'
                    f'[attention]\nwindow = {window}\nheads = "{heads}"\n'
                    f"pool = {pool}\ncarry = {carry}\n"
                )
            paths.append(path)
    print(",".join(paths))


if __name__ == "__main__":
    main()
