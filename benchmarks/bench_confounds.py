"""Peak memory of the token confounds with a large vocabulary: logits block by block from
the LM head's input (the capture's path) against the model's full ``(B, T, V)`` logits.

A random Llama-shaped model small in every dimension but the vocabulary (Gemma-3's
262,144 tokens by default) reads one text of ``--tokens`` tokens; each variant runs in its
own process, and the row gives the peak RSS that the extraction added to the loaded model:

    python benchmarks/bench_confounds.py --json out.json   # ~1 min, ~2.5 GB of RAM
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path


def run_one(variant: str, vocab: int, tokens: int) -> dict:
    """In this process: build the model, extract one text, report peak RSS (MB)."""
    import time

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from probes.capture import SpectralCapture
    from probes.config import CaptureConfig
    from probes.models import FrozenLM, resolve_tokenization
    from probes.tiny import char_tokenizer

    tokenizer = char_tokenizer()
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=tokens + 8,
        pad_token_id=0,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    # Not tiny.wrap_random: hashing 260k x 64 weights would raise the high-water mark that
    # the extraction's peak is measured against.
    identity = {
        "name_or_path": "bench-llama",
        "revision": None,
        "weights_hash": None,
        "tokenization": resolve_tokenization(tokenizer, False, "plain"),
    }
    lm = FrozenLM(model, tokenizer, identity, source="random")
    cfg = CaptureConfig(
        layers=(0,), probe_layer=None, families=("eig_mean",), max_tokens=tokens + 8
    )
    capture = SpectralCapture(lm, cfg)
    capture._head_blocks = variant == "head_blocks"
    text = ("12 + 34 = 46. " * tokens)[:tokens]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    ex = capture.extract([text])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "variant": variant,
        "vocab": vocab,
        "tokens": int(ex.n_tokens[0]),
        "seconds": seconds,
        "peak_rss_mb": peak,
        "extraction_rss_mb": peak - before,
        "logprob": float(ex.column("confound/logprob")[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab", type=int, default=262144)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--json")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.vocab, args.tokens)))
        return
    rows = []
    for variant in ("full_logits", "head_blocks"):
        cmd = [sys.executable, __file__, "--one", variant]
        cmd += ["--vocab", str(args.vocab), "--tokens", str(args.tokens)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    full, blocks = rows
    for r in rows:
        r["extraction_rss_ratio_to_full"] = r["extraction_rss_mb"] / full["extraction_rss_mb"]
        print(
            f"{r['variant']:12} V={r['vocab']} T={r['tokens']}: +{r['extraction_rss_mb']:7.0f} MB "
            f"over the loaded model ({r['extraction_rss_ratio_to_full']:.2f}x full), "
            f"{r['seconds']:.2f} s, logprob {r['logprob']:.6f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"results": rows}, indent=1))


if __name__ == "__main__":
    main()
