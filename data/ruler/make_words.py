#!/usr/bin/env python3
"""Builds data/ruler/words.txt, the word list of `sdtp eval ruler`, from the shipped book.

RULER draws its needle keys and its common-words-extraction lists from the `wonderwords`
package's English word lists, which are not shipped here; this list stands in for them and is
derived reproducibly from data/text/eighty_days.jsonl (public domain, see data/README.md).

Rule: every maximal run of ASCII letters in the chapters' text is a word. Keep those that
1. are at least 3 letters long,
2. appear at least once written entirely in lowercase (so names such as "Fogg" or
   "Passepartout", only ever capitalised, drop out), and
3. are not among the 100 most frequent lowercase words of the book (function words such as
   "the", "and", "was": as RULER's answers are matched as substrings, a reference like "the"
   would be found in almost any answer).
The list is sorted and written one word a line.

Usage: python3 data/ruler/make_words.py > data/ruler/words.txt
"""

import collections
import json
import os
import re
import sys

BOOK = os.path.join(os.path.dirname(__file__), "..", "text", "eighty_days.jsonl")
MIN_LEN = 3
DROP_MOST_FREQUENT = 100


def main():
    counts = collections.Counter()
    with open(BOOK, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                text = json.loads(line)["text"]
                counts.update(w for w in re.findall(r"[A-Za-z]+", text) if w.islower())
    frequent = {w for w, _ in counts.most_common(DROP_MOST_FREQUENT)}
    words = sorted(w for w in counts if len(w) >= MIN_LEN and w not in frequent)
    sys.stdout.write("".join(w + "\n" for w in words))


if __name__ == "__main__":
    main()
