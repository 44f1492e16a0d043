#!/usr/bin/env python3
"""Independent numpy reference for the Llama forward pass of a GGUF model.

Produces a small JSON fixture (tests/fixtures/smollm2_reference.json) that the
Rust test-suite compares against.

This implementation deliberately follows llama.cpp's own conventions and does
NOT share any logic with the Rust side:

* weights are dequantised with ``gguf.quants.dequantize`` (the reference
  dequantiser shipped with llama.cpp's gguf-py) to float32;
* attn_q / attn_k are used exactly as stored in the GGUF (rows permuted by
  convert_hf_to_gguf.py), so RoPE is applied llama.cpp-"normal" style to
  consecutive pairs (x[2i], x[2i+1]) -- the Rust side instead un-permutes the
  weights and uses HF rotate-half RoPE; the two are mathematically identical;
* the tokenizer is built with the HF ``tokenizers`` library from the GGUF
  vocab + merges.

All arithmetic is numpy float32 (RoPE angles computed in float64 then cast).
Run:
    ~/.cache/sdtp/venv/bin/python scripts/make_reference.py \
        --model ~/.cache/sdtp/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out tests/fixtures/smollm2_reference.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

import gguf
from gguf import GGUFReader
from gguf.quants import dequantize

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, AddedToken

DEFAULT_MODEL = os.path.expanduser("~/.cache/sdtp/models/SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "tests", "fixtures", "smollm2_reference.json",
)

GREEDY_STEPS = 8
TOP_K = 20

PROMPTS = [
    # (a) ~5 tokens
    "The capital of France is",
    # (b) ChatML, ~40 tokens: exactly what the GGUF's chat template renders for a
    # single user turn (it inserts the default SmolLM system message) plus the
    # generation prompt.
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n"
    "<|im_start|>user\nWhat is the boiling point of water at sea level in Celsius?<|im_end|>\n"
    "<|im_start|>assistant\n",
    # (c) ~120 tokens
    "The river begins as a thin stream high in the mountains, fed by melting snow and "
    "spring rain. For thousands of years, people have lived along its banks, fishing in "
    "its cold water and farming the rich soil left behind by each flood. In the 1800s, "
    "small towns grew into busy ports, and wooden boats carried grain, timber and salt "
    "down to the sea. Later, engineers built dams and locks to control the water and to "
    "make electricity. Today the river is quieter, and many people visit it simply to "
    "walk along the shore and watch the birds.",
    # (d) ~300 tokens
    "Making bread at home is one of the oldest and most rewarding kinds of cooking. The "
    "basic recipe needs only four ingredients: flour, water, salt and yeast. First, the "
    "baker mixes the flour and salt in a large bowl, then adds warm water in which the "
    "yeast has been dissolved. The mixture is stirred until it forms a rough, sticky "
    "dough. Next comes kneading, which is the most important step. By pushing, folding "
    "and turning the dough for about ten minutes, the baker develops long strands of "
    "gluten, the stretchy protein network that gives bread its structure. When the dough "
    "feels smooth and springs back when pressed, it is placed in an oiled bowl, covered "
    "with a cloth, and left in a warm place to rise. During this time the yeast eats the "
    "sugars in the flour and releases carbon dioxide, which is trapped by the gluten and "
    "makes the dough swell to roughly twice its size. After an hour or two, the baker "
    "gently presses out the air, shapes the dough into a loaf, and lets it rise a second "
    "time. Just before baking, many bakers cut a shallow slash across the top so that "
    "the loaf can expand evenly in the oven. The bread is then baked in a hot oven until "
    "the crust turns golden brown and the loaf sounds hollow when tapped on the bottom. "
    "Finally, it must cool on a wire rack before slicing, because the inside is still "
    "cooking from its own heat. The result is a warm kitchen, a wonderful smell, and a "
    "loaf that tastes far better than anything bought from a shop.",
]

EXPECTED_CAPITAL_IDS = [504, 3575, 282, 4649, 314]


# --------------------------------------------------------------------------- GGUF


def field_value(reader: GGUFReader, key: str):
    f = reader.fields[key]
    return f.contents()


def load_tensors(reader: GGUFReader) -> dict[str, np.ndarray]:
    """Dequantise every tensor to float32, numpy (row-major) shape.

    GGUF lists shapes in ggml order (ne0 = innermost/contiguous first), i.e.
    reversed relative to numpy.  ``dequantize`` returns numpy order.
    """
    out = {}
    for t in reader.tensors:
        arr = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        np_shape = tuple(int(x) for x in reversed([int(s) for s in t.shape]))
        arr = arr.reshape(np_shape)
        out[t.name] = np.ascontiguousarray(arr)
    return out


# ---------------------------------------------------------------------- tokenizer


def build_tokenizer(reader: GGUFReader) -> Tokenizer:
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    token_types = field_value(reader, "tokenizer.ggml.token_type")
    merges = field_value(reader, "tokenizer.ggml.merges")
    model_kind = field_value(reader, "tokenizer.ggml.model")
    assert model_kind == "gpt2", model_kind

    vocab = {tok: i for i, tok in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate tokens in vocab"
    merge_pairs = []
    for m in merges:
        a, b = m.split(" ")
        merge_pairs.append((a, b))

    bpe = models.BPE(vocab=vocab, merges=merge_pairs, fuse_unk=False, byte_fallback=False)
    tok = Tokenizer(bpe)
    pre = field_value(reader, "tokenizer.ggml.pre")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        # SmolLM's tokenizer.json (and llama.cpp's LLAMA_VOCAB_PRE_TYPE_SMOLLM)
        # splits every digit into its own pre-token before the GPT-2 regex.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()

    # Control tokens (token_type == 3: <|endoftext|>, <|im_start|>, <|im_end|>,
    # ...) are matched verbatim as single special tokens.
    specials = [AddedToken(tokens[i], special=True, normalized=False)
                for i, ty in enumerate(token_types) if int(ty) == 3]
    tok.add_special_tokens(specials)
    for s in specials:
        assert tok.token_to_id(s.content) == vocab[s.content]
    return tok


# ------------------------------------------------------------------------ model


class Llama:
    def __init__(self, reader: GGUFReader):
        arch = field_value(reader, "general.architecture")
        assert arch == "llama", arch
        g = lambda k: field_value(reader, f"{arch}.{k}")  # noqa: E731
        self.n_layer = int(g("block_count"))
        self.n_embd = int(g("embedding_length"))
        self.n_ff = int(g("feed_forward_length"))
        self.n_head = int(g("attention.head_count"))
        self.n_head_kv = int(g("attention.head_count_kv"))
        self.head_dim = self.n_embd // self.n_head
        self.rope_base = float(g("rope.freq_base"))
        self.eps = float(g("attention.layer_norm_rms_epsilon"))
        self.n_vocab = len(field_value(reader, "tokenizer.ggml.tokens"))

        W = load_tensors(reader)
        self.W = W
        self.tok_embd = W["token_embd.weight"]
        assert self.tok_embd.shape == (self.n_vocab, self.n_embd), self.tok_embd.shape
        # tied embeddings unless output.weight exists
        self.lm_head = W.get("output.weight", self.tok_embd)
        self.tied = "output.weight" not in W
        hd, nh, nkv = self.head_dim, self.n_head, self.n_head_kv
        for i in range(self.n_layer):
            p = f"blk.{i}."
            assert W[p + "attn_q.weight"].shape == (nh * hd, self.n_embd)
            assert W[p + "attn_k.weight"].shape == (nkv * hd, self.n_embd)
            assert W[p + "attn_v.weight"].shape == (nkv * hd, self.n_embd)
            assert W[p + "attn_output.weight"].shape == (self.n_embd, nh * hd)
            assert W[p + "ffn_gate.weight"].shape == (self.n_ff, self.n_embd)
            assert W[p + "ffn_up.weight"].shape == (self.n_ff, self.n_embd)
            assert W[p + "ffn_down.weight"].shape == (self.n_embd, self.n_ff)

    # -- building blocks --------------------------------------------------

    def rms_norm(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        ms = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32)
        return (x / np.sqrt(ms + np.float32(self.eps))).astype(np.float32) * w

    def rope_tables(self, n: int):
        hd = self.head_dim
        i = np.arange(hd // 2, dtype=np.float64)
        inv_freq = self.rope_base ** (-2.0 * i / hd)  # theta_i
        pos = np.arange(n, dtype=np.float64)
        ang = pos[:, None] * inv_freq[None, :]  # (n, hd/2)
        return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)

    @staticmethod
    def rope_normal(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        """llama.cpp GGML_ROPE_TYPE_NORMAL: rotate consecutive pairs (x[2i], x[2i+1]).

        x: (n, heads, hd); cos/sin: (n, hd/2)
        """
        x0 = x[..., 0::2]
        x1 = x[..., 1::2]
        c = cos[:, None, :]
        s = sin[:, None, :]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out

    # -- forward ----------------------------------------------------------

    def forward(self, ids: list[int]) -> np.ndarray:
        """Returns logits for every position, shape (n, n_vocab), float32."""
        W = self.W
        n = len(ids)
        hd, nh, nkv = self.head_dim, self.n_head, self.n_head_kv
        group = nh // nkv
        scale = np.float32(1.0 / np.sqrt(hd))
        cos, sin = self.rope_tables(n)
        mask = np.triu(np.ones((n, n), dtype=bool), k=1)  # True = masked (future)

        h = self.tok_embd[np.asarray(ids, dtype=np.int64)].astype(np.float32)
        for L in range(self.n_layer):
            p = f"blk.{L}."
            x = self.rms_norm(h, W[p + "attn_norm.weight"])
            q = (x @ W[p + "attn_q.weight"].T).reshape(n, nh, hd)
            k = (x @ W[p + "attn_k.weight"].T).reshape(n, nkv, hd)
            v = (x @ W[p + "attn_v.weight"].T).reshape(n, nkv, hd)
            q = self.rope_normal(q, cos, sin)
            k = self.rope_normal(k, cos, sin)

            attn = np.empty((n, nh, hd), dtype=np.float32)
            for hq in range(nh):
                hk = hq // group
                s = (q[:, hq, :] @ k[:, hk, :].T) * scale  # (n, n)
                s = np.where(mask, np.float32(-np.inf), s).astype(np.float32)
                s = s - s.max(axis=-1, keepdims=True)
                e = np.exp(s)
                pmat = e / e.sum(axis=-1, keepdims=True)
                attn[:, hq, :] = pmat @ v[:, hk, :]
            h = h + attn.reshape(n, nh * hd) @ W[p + "attn_output.weight"].T

            x = self.rms_norm(h, W[p + "ffn_norm.weight"])
            gate = x @ W[p + "ffn_gate.weight"].T
            up = x @ W[p + "ffn_up.weight"].T
            act = gate / (np.float32(1.0) + np.exp(-gate)) * up  # silu(gate) * up
            h = h + act @ W[p + "ffn_down.weight"].T
            assert h.dtype == np.float32

        h = self.rms_norm(h, W["output_norm.weight"])
        return h @ self.lm_head.T


# ------------------------------------------------------------------------- main


def sha256_file(path: str) -> str:
    hsh = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hsh.update(chunk)
    return hsh.hexdigest()


def top_k(logits: np.ndarray, k: int):
    # stable sort by (-value, id) so ties are deterministic
    order = np.lexsort((np.arange(logits.shape[0]), -logits.astype(np.float64)))[:k]
    return [int(i) for i in order], [float(logits[i]) for i in order]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    t0 = time.time()
    reader = GGUFReader(args.model)
    tok = build_tokenizer(reader)

    ids_capital = tok.encode(PROMPTS[0], add_special_tokens=False).ids
    assert ids_capital == EXPECTED_CAPITAL_IDS, ids_capital
    im_start = tok.token_to_id("<|im_start|>")
    im_end = tok.token_to_id("<|im_end|>")
    assert (im_start, im_end) == (1, 2), (im_start, im_end)

    model = Llama(reader)
    print(f"loaded {args.model}: {model.n_layer} layers, d={model.n_embd}, heads={model.n_head}/"
          f"{model.n_head_kv}, hd={model.head_dim}, ff={model.n_ff}, vocab={model.n_vocab}, "
          f"rope_base={model.rope_base}, eps={model.eps}, tied={model.tied} "
          f"({time.time() - t0:.1f}s)", file=sys.stderr)

    results = []
    for text in PROMPTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        if "<|im_start|>" in text:
            assert ids.count(im_start) == text.count("<|im_start|>")
            assert ids.count(im_end) == text.count("<|im_end|>")
        t1 = time.time()
        logits = model.forward(ids)
        last = logits[-1].astype(np.float32)
        assert np.all(np.isfinite(last))
        top_ids, top_vals = top_k(last, TOP_K)
        argmax = int(np.argmax(last))
        assert argmax == top_ids[0]

        # greedy decode, full recompute each step; also record the top1-top2
        # logit margin of every step so consumers can judge how robust each
        # greedy choice is to small numeric differences.
        greedy = []
        margins = []
        seq = list(ids)
        step_logits = last
        for step in range(GREEDY_STEPS):
            s_ids, s_vals = top_k(step_logits, 2)
            greedy.append(s_ids[0])
            margins.append(s_vals[0] - s_vals[1])
            seq.append(s_ids[0])
            if step + 1 < GREEDY_STEPS:
                step_logits = model.forward(seq)[-1]

        rec = {
            "text": text,
            "ids": [int(i) for i in ids],
            "last_logits_top20": {"ids": top_ids, "values": top_vals},
            "argmax": argmax,
            "last_logits_l2": float(np.sqrt(np.sum(last.astype(np.float64) ** 2))),
            "last_logits_sum": float(np.sum(last.astype(np.float64))),
            "greedy_next_8": greedy,
            "greedy_margins": margins,
        }
        results.append(rec)
        print(f"prompt len={len(ids):4d} argmax={argmax:6d} ({tok.decode([argmax], skip_special_tokens=False)!r}) "
              f"l2={rec['last_logits_l2']:.4f} greedy={greedy} -> {tok.decode(greedy, skip_special_tokens=False)!r} "
              f"({time.time() - t1:.1f}s)", file=sys.stderr)

    fixture = {
        "model_sha256": sha256_file(args.model),
        "model_file": os.path.basename(args.model),
        "generator": "scripts/make_reference.py",
        "gguf_version": _pkg_version("gguf"),
        "numpy_version": np.__version__,
        "tokenizers_version": tokenizers.__version__,
        "config": {
            "n_layer": model.n_layer, "n_embd": model.n_embd, "n_head": model.n_head,
            "n_head_kv": model.n_head_kv, "head_dim": model.head_dim, "n_ff": model.n_ff,
            "n_vocab": model.n_vocab, "rope_freq_base": model.rope_base,
            "rms_norm_eps": model.eps, "tied_embeddings": model.tied,
        },
        "notes": "numpy float32 forward; weights dequantised with gguf.quants.dequantize; "
                 "llama.cpp normal (adjacent-pair) RoPE on GGUF-permuted q/k; no BOS; "
                 "greedy_next_8 recomputes the full forward each step.",
        "prompts": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")

    print("\nsummary:")
    for i, r in enumerate(results):
        print(f"  prompt {'abcd'[i]}: {len(r['ids'])} tokens, argmax {r['argmax']}, "
              f"min greedy margin {min(r['greedy_margins']):.4f}")
    print(f"  greedy continuation of (a): {PROMPTS[0]!r} + {tok.decode(results[0]['greedy_next_8'], skip_special_tokens=False)!r}")
    print(f"  wrote {args.out} ({os.path.getsize(args.out)} bytes) in {time.time() - t0:.1f}s")
    return 0


def _pkg_version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


if __name__ == "__main__":
    sys.exit(main())
