#!/usr/bin/env python3
"""Rebuilds data/text/eighty_days.jsonl from Project Gutenberg EBook #103.

Source: `data/eighty.txt` inside the crates.io package esaxx-rs 0.1.10 (a dependency of the
`tokenizers` crate, so it is already in ~/.cargo/registry after `cargo build`).

Usage: python3 data/text/make_eighty_days.py [PATH/TO/eighty.txt] > data/text/eighty_days.jsonl

What it does: drops the byte-order mark, CRLF line ends, the Project Gutenberg header, table of
contents and licence footer; splits the book at its "Chapter N" headings; joins each
paragraph's hard-wrapped lines into one line (paragraphs stay separated by a blank line) and
collapses runs of spaces. No words are changed.
"""

import glob
import json
import os
import re
import sys

START = "*** START OF THIS PROJECT GUTENBERG EBOOK AROUND THE WORLD IN 80 DAYS ***"
END = "End of Project Gutenberg's Around the World in 80 Days, by Jules Verne"


def default_source():
    pattern = os.path.expanduser(
        "~/.cargo/registry/src/*/esaxx-rs-0.1.10/data/eighty.txt"
    )
    found = sorted(glob.glob(pattern))
    if not found:
        sys.exit(f"no {pattern}; run `cargo fetch` first or pass the path")
    return found[0]


def paragraphs(lines):
    out, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.strip())
        elif current:
            out.append(re.sub(r"\s+", " ", " ".join(current)))
            current = []
    if current:
        out.append(re.sub(r"\s+", " ", " ".join(current)))
    return out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else default_source()
    with open(path, encoding="utf-8-sig") as f:
        text = f.read().replace("\r\n", "\n")
    body = text[text.index(START) + len(START) : text.index(END)]
    parts = re.split(r"^Chapter ([IVXL]+)\s*$", body, flags=re.M)
    # parts = [front matter, numeral, chapter, numeral, chapter, ...]
    for number, (numeral, chapter) in enumerate(zip(parts[1::2], parts[2::2]), start=1):
        paras = paragraphs(chapter.split("\n"))
        heading, paras = paras[0], paras[1:]
        title = f"Chapter {numeral}. {heading}"
        record = {
            "id": f"eighty-days-{number:02d}",
            "title": title,
            "text": "\n\n".join(paras),
        }
        print(json.dumps(record, ensure_ascii=False))


if __name__ == "__main__":
    main()
