"""Speed and peak memory of feature extraction on the embedded model, against baselines
measured in the same run.

Variants, one text at a time, each in its own process (its peak RSS is its own; the
high-water mark is reset before each length):

* ``forward``: a bare eager forward pass, no attention kept (the floor);
* ``naive_per_head``: the article's method done correctly: ``output_attentions=True``, then
  per layer and per head ``W = (A + A^T) / 2``, ``L_sym`` and a dense symmetric ``eigh``;
* ``streaming``: this toolkit's capture, default features (mean of heads, float64);
* ``streaming_f32``: the same with ``eig_dtype: float32``;
* ``streaming_dense``, ``streaming_heads_dense``: ``streaming`` and ``streaming_heads`` with
  ``eig_method: dense`` (a full float64 ``eigvalsh`` per graph, the solver before
  ``probes.eigen``);
* ``streaming_heads``: the capture with per-head spectra (``heads: each``), the like-for-like
  comparison with ``naive_per_head``;
* ``streaming_all``: the capture with every feature family (eigenvectors included);
* ``spectral_trust``: the peer package's ``analyze_text`` with its defaults, when installed
  (``make bench`` installs it with torch pinned to the installed version);
* ``output_attentions`` (only when named in ``--variants``): a forward pass keeping every
  layer's attention at once.

Then, at ``--load-tokens`` while another process keeps one core busy: ``streaming``
(``eig_workers`` single-threaded solvers, the default) and ``streaming_eig2threads`` (one
solver with two OpenMP threads, the setting that collapsed in our trials).

Every variant alternates its runs with a bare forward pass in the same process; ``x fwd`` is
the median of the per-pair ratios, so it does not move with the machine's speed, which here
drifted by up to 30% between processes. ``x naive`` divides those ratios. Each variant runs
up to ``--repeats`` pairs after a warm-up on a short text, fewer when another pair would
take it past ``--budget-s`` seconds (the row says how many: the naive method at 1024 tokens
gets one). Prints the tables; ``--json PATH`` and ``--markdown PATH`` write them.

    python benchmarks/bench_extract.py --json out.json        # ~8 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXT = (
    "Problem: Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?\n"
    "Solution: In May, Natalia sold 48 / 2 = 24 clips. In April and May together she sold "
    "48 + 24 = 72 clips. The answer is 72.\n"
)
VARIANTS = (
    "forward",
    "naive_per_head",
    "streaming",
    "streaming_f32",
    "streaming_dense",
    "streaming_heads",
    "streaming_heads_dense",
    "streaming_all",
    "spectral_trust",
)
LOAD_VARIANTS = ("streaming", "streaming_eig2threads")
OPTIONAL_VARIANTS = ("output_attentions",)
ORDER = {v: i for i, v in enumerate(dict.fromkeys(VARIANTS + LOAD_VARIANTS + OPTIONAL_VARIANTS))}
WARMUP_TOKENS = 64


def peak_rss_mb() -> float:
    """The process's resident high-water mark (VmHWM) in MiB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def naive_per_head(model, input_ids) -> list[float]:
    """The article's per-head spectra, done correctly: symmetric matrix, symmetric solver."""
    import torch

    with torch.inference_mode():
        out = model(input_ids=input_ids, output_attentions=True, use_cache=False)
    gaps = []
    for layer in out.attentions:  # L tensors (1, H, T, T), all alive at once
        for A in layer[0].double():  # (T, T)
            W = (A + A.T) / 2
            s = W.sum(dim=1).rsqrt()
            L = torch.eye(W.shape[0], dtype=W.dtype) - s[:, None] * W * s[None, :]
            vals, vecs = torch.linalg.eigh(L)
            gaps.append(float(vals[1] - vals[0]))
    return gaps


def make_step(variant: str, lm, text: str, n_tokens: int):
    """A zero-argument callable that processes ``text`` once with ``variant``."""
    import torch

    from probes import CaptureConfig, SpectralCapture

    input_ids = lm.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    if variant in ("forward", "output_attentions"):
        keep = variant == "output_attentions"

        def step():
            with torch.inference_mode():
                lm.model(input_ids=input_ids, output_attentions=keep, use_cache=False)

        return step
    if variant == "naive_per_head":
        return lambda: naive_per_head(lm.model, input_ids)
    if variant == "spectral_trust":
        return spectral_trust_step(lm, text, n_tokens)
    options = {
        "streaming": {},
        "streaming_f32": {"eig_dtype": "float32"},
        "streaming_heads": {"heads": "each"},
        "streaming_dense": {"eig_method": "dense"},
        "streaming_heads_dense": {"heads": "each", "eig_method": "dense"},
        "streaming_all": {"families": "all"},
        "streaming_eig2threads": {},
    }[variant]
    threads = {"eig_threads": 2, "eig_workers": 1} if variant == "streaming_eig2threads" else {}
    capture = SpectralCapture(lm, CaptureConfig(max_tokens=n_tokens, **options), **threads)
    return lambda: capture.extract([text])


def spectral_trust_step(lm, text: str, n_tokens: int):
    import logging

    from spectral_trust import GSPConfig, GSPDiagnosticsFramework

    logging.disable(logging.INFO)
    folder = lm.model.name_or_path  # the embedded model's cached transformers folder
    cfg = GSPConfig(
        model_name=folder,
        device="cpu",
        max_length=n_tokens + 8,
        output_dir=tempfile.mkdtemp(prefix="spectral-trust-"),
        save_plots=False,
        save_intermediate=False,
        save_attention=False,
        save_activations=False,
        verbose=False,
        local_files_only=True,
    )
    framework = GSPDiagnosticsFramework(cfg)
    framework.instrumenter.load_model(folder)
    return lambda: framework.analyze_text(text, save_results=False)


#: Random-weight Llama-shaped models, read with the embedded model's tokenizer: the cost of
#: a bigger model (24 layers x 16 heads of 64) without downloading one.
RANDOM_MODELS = {
    "random-llama-24x16": {
        "hidden_size": 1024,
        "intermediate_size": 2816,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
    },
}


def bench_model(name: str):
    """``name`` loaded as the toolkit loads it, or one of :data:`RANDOM_MODELS`."""
    from probes import load_frozen

    if name not in RANDOM_MODELS:
        return load_frozen(name)
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from probes.tiny import wrap_random

    tokenizer = load_frozen("smollm2-135m").tokenizer
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        attn_implementation="eager",
        **RANDOM_MODELS[name],
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    return wrap_random(model, tokenizer, name, tokenization=True)


def child(variant: str, lengths: list[int], repeats: int, budget_s: float, model: str) -> None:
    """Runs in a child process: one JSON line per length."""
    import torch

    if variant == "spectral_trust":
        try:
            import spectral_trust  # noqa: F401
        except ImportError:
            print(json.dumps({"skipped": "spectral-trust is not installed (make bench)"}))
            return
    lm = bench_model(model)
    all_ids = lm.tokenizer(TEXT * 80, add_special_tokens=False)["input_ids"]
    make_step(variant, lm, lm.tokenizer.decode(all_ids[:WARMUP_TOKENS]), WARMUP_TOKENS)()
    for n in lengths:
        text = lm.tokenizer.decode(all_ids[:n])
        step = make_step(variant, lm, text, n)
        # Every variant alternates with a bare forward pass in its own process: the ratio of
        # each pair cancels the machine's speed drifting between processes (+-30% here).
        floor = make_step("forward", lm, text, n) if variant != "forward" else None
        exact = reset_peak_rss()
        times, floor_times = [], []
        spent = last = 0.0
        # Another run only while it is expected to fit in the budget (as long as the last).
        while len(times) < repeats and (not times or spent + last <= budget_s):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
            if floor is not None:
                t = time.perf_counter()
                floor()
                floor_times.append(time.perf_counter() - t)
            last = times[-1] + (floor_times[-1] if floor_times else 0.0)
            spent += last
        row = {
            "tokens": n,
            "variant": variant,
            "seconds": statistics.median(times),
            "runs": len(times),
            "peak_rss_mb": peak_rss_mb(),
            "peak_rss_exact": exact,
            "threads": torch.get_num_threads(),
            "forward_seconds_same_process": statistics.median(floor_times or times),
            "ratio_to_forward": statistics.median(
                [a / b for a, b in zip(times, floor_times, strict=True)] if floor else [1.0]
            ),
        }
        print(json.dumps(row), flush=True)


def run_children(variants, lengths, args, label: str, failures: list[dict]) -> list[dict]:
    rows = []
    for variant in variants:
        cmd = [sys.executable, __file__, "--child", variant, "--tokens", *map(str, lengths)]
        cmd += ["--repeats", str(args.repeats), "--budget-s", str(args.budget_s)]
        cmd += ["--model", args.model]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            # Keep what the other variants measure; the rows this one finished still count.
            error = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "no output"
            print(f"  {label}{variant:22s} FAILED: {error}", flush=True)
            failures.append({"variant": variant, "load": label.strip() or None, "error": error})
        for line in out.stdout.strip().splitlines():
            row = json.loads(line)
            if "skipped" in row:
                print(f"  {label}{variant:22s} skipped: {row['skipped']}", flush=True)
                continue
            row["load"] = label.strip() or None
            rows.append(row)
            print(
                f"  {label}{row['tokens']:5d} tokens {variant:22s} {row['seconds']:8.3f} s"
                f" ({row['runs']} runs)",
                flush=True,
            )
    return rows


def add_ratios(rows: list[dict]) -> None:
    """Ratios to the naive method: of the forward-normalised times (drift cancels)."""
    by = {(r["tokens"], r["variant"]): r for r in rows}
    for r in rows:
        naive = by.get((r["tokens"], "naive_per_head"))
        r["ratio_to_naive_per_head"] = (
            r["ratio_to_forward"] / naive["ratio_to_forward"] if naive else None
        )
        r["memory_ratio_to_naive_per_head"] = (
            r["peak_rss_mb"] / naive["peak_rss_mb"] if naive else None
        )


def print_table(rows: list[dict], title: str) -> None:
    header = ("tokens", "variant", "s/text", "runs", "peak MB") + RATIO_HEADER
    print(
        f"\n{title}\n" + "{:>6} {:22} {:>8} {:>4} {:>8} {:>7} {:>10} {:>7} {:>10}".format(*header)
    )
    for r in rows:
        cells = ratio_cells(r)
        print(
            f"{r['tokens']:6d} {r['variant']:22} {r['seconds']:8.3f} {r['runs']:4d}"
            f" {r['peak_rss_mb']:8.0f} {cells[0]:>7} {cells[1]:>10} {cells[2]:>7} {cells[3]:>10}"
        )


RATIO_HEADER = ("fwd s", "x fwd", "x naive", "MB x naive")


def ratio_cells(r: dict) -> list[str]:
    cells = [r["forward_seconds_same_process"], r["ratio_to_forward"]]
    cells += [r["ratio_to_naive_per_head"], r["memory_ratio_to_naive_per_head"]]
    return [f"{x:.2f}" if x is not None else "-" for x in cells]


def goals(rows: list[dict]) -> dict:
    """The targets of the streaming path, from the idle rows, per length."""
    by = {(r["tokens"], r["variant"]): r for r in rows}

    def over(n: int, a: str, b: str) -> float | None:
        ra, rb = by.get((n, a)), by.get((n, b))
        return ra["ratio_to_forward"] / rb["ratio_to_forward"] if ra and rb else None

    out = {}
    for n in sorted({r["tokens"] for r in rows}):
        s = by.get((n, "streaming"), {})
        out[str(n)] = {
            "streaming_x_forward": s.get("ratio_to_forward"),
            "naive_per_head_over_streaming_heads": over(n, "naive_per_head", "streaming_heads"),
            "naive_per_head_over_streaming": over(n, "naive_per_head", "streaming"),
            "spectral_trust_over_streaming": over(n, "spectral_trust", "streaming"),
        }
    return out


def markdown(report: dict) -> str:
    """The tables of :func:`main` as Markdown (``--markdown``)."""

    def table(rows: list[dict]) -> list[str]:
        lines = [
            "| tokens | variant | s/text | runs | peak RSS MB | " + " | ".join(RATIO_HEADER) + " |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            cells = ratio_cells(r)
            lines.append(
                f"| {r['tokens']} | {r['variant']} | {r['seconds']:.3f} | {r['runs']} "
                f"| {r['peak_rss_mb']:.0f} | {' | '.join(cells)} |"
            )
        return lines

    m = report["machine"]
    lines = [
        f"Model `{report['model']}`, {m['cpus']} CPUs, torch {m['torch']} "
        f"({m['torch_threads']} threads), median of up to {report['repeats']} runs "
        f"(budget {report['budget_s']:g} s per variant and length).",
        "",
        *table(report["results"]),
    ]
    if report["under_load"]:
        lines += ["", "One core kept busy by another process:", "", *table(report["under_load"])]
    for f in report["failed"]:
        lines += ["", f"**{f['variant']} failed**: `{f['error']}`"]
    return "\n".join(lines) + "\n"


class BusyCore:
    """Another process keeping one core busy for the duration of the block."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (most)")
    parser.add_argument(
        "--budget-s", type=float, default=25, help="time for one variant at one length (s)"
    )
    parser.add_argument(
        "--model", default="smollm2-135m", help=f"a model name, or one of {list(RANDOM_MODELS)}"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--load-tokens", type=int, default=512, help="0 skips the load study")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--markdown", help="write the tables here as Markdown")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    known = set(ORDER)
    unknown = [v for v in args.variants + ([args.child] if args.child else []) if v not in known]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(sorted(known))}")
    if args.child:
        child(args.child, args.tokens, args.repeats, args.budget_s, args.model)
        return
    start = time.perf_counter()
    print(f"idle: {', '.join(args.variants)} at {args.tokens} tokens", flush=True)
    failures: list[dict] = []
    rows = run_children(args.variants, args.tokens, args, "", failures)
    rows.sort(key=lambda r: (r["tokens"], ORDER[r["variant"]]))
    add_ratios(rows)
    print_table(rows, "idle")
    load_rows = []
    if args.load_tokens:
        print(f"\nunder load (one core busy): {', '.join(LOAD_VARIANTS)}", flush=True)
        with BusyCore():
            load_rows = run_children(LOAD_VARIANTS, [args.load_tokens], args, "load ", failures)
        add_ratios(load_rows)
        print_table(load_rows, "one core busy in another process")
    summary = goals(rows)
    print("\ngoals (streaming x forward: 1.25 at most at 512; naive per-head: 5x slower at least):")
    for n, g in summary.items():
        cells = {k: f"{x:.2f}" if x is not None else "-" for k, x in g.items()}
        print(
            f"  {n:>5} tokens: streaming {cells['streaming_x_forward']}x forward;"
            f" naive per-head {cells['naive_per_head_over_streaming_heads']}x streaming per-head,"
            f" {cells['naive_per_head_over_streaming']}x streaming;"
            f" spectral-trust {cells['spectral_trust_over_streaming']}x streaming"
        )
    print(f"\nbenchmark took {time.perf_counter() - start:.0f} s")
    import torch

    report = {
        "model": args.model,
        "repeats": args.repeats,
        "budget_s": args.budget_s,
        "machine": {
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "results": rows,
        "under_load": load_rows,
        "goals": summary,
        "failed": failures,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(markdown(report))
        print(f"wrote {args.markdown}")
    if failures:
        sys.exit(f"{len(failures)} variant(s) failed: {', '.join(f['variant'] for f in failures)}")


if __name__ == "__main__":
    main()
