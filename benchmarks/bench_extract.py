"""Speed and peak memory of feature extraction on the embedded model, against baselines
measured in the same run.

Variants, one text at a time, each in its own process so that its peak RSS is its own:

* ``forward``: a bare eager forward pass, no attention kept (the floor);
* ``output_attentions``: a forward pass with ``output_attentions=True`` (every layer's
  attention kept at once, as the naive method needs);
* ``streaming``: this toolkit's capture with the default feature set;
* ``streaming_all``: the capture with every feature family (eigenvectors included).

Prints a table (median seconds per text after a warm-up, texts/s, peak RSS) and the ratios
to ``forward`` and ``output_attentions``; ``--json PATH`` writes the same numbers.

    python benchmarks/bench_extract.py --tokens 256 512 1024 --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

TEXT = (
    "Problem: Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?\n"
    "Solution: In May, Natalia sold 48 / 2 = 24 clips. In April and May together she sold "
    "48 + 24 = 72 clips. The answer is 72.\n"
)
VARIANTS = ("forward", "output_attentions", "streaming", "streaming_all")


def run_variant(variant: str, n_tokens: int, repeats: int, model: str) -> dict:
    """Runs in a child process: time one variant, report its peak RSS."""
    import torch

    from probes import CaptureConfig, SpectralCapture, load_frozen

    lm = load_frozen(model)
    ids = lm.tokenizer(TEXT * 40, add_special_tokens=False)["input_ids"][:n_tokens]
    text = lm.tokenizer.decode(ids)
    input_ids = torch.tensor([ids])
    if variant.startswith("streaming"):
        families = "all" if variant == "streaming_all" else CaptureConfig().families
        capture = SpectralCapture(lm, CaptureConfig(families=families, max_tokens=n_tokens))

        def step():
            capture.extract([text])
    else:
        keep = variant == "output_attentions"

        def step():
            with torch.inference_mode():
                out = lm.model(input_ids=input_ids, output_attentions=keep, use_cache=False)
            if keep:
                assert len(out.attentions) == lm.n_layers

    step()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": statistics.median(times),
        "peak_rss_mb": peak_mb,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child[0], int(args.child[1]), args.repeats, args.model)))
        return
    results = []
    for n in args.tokens:
        for variant in args.variants:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                variant,
                str(n),
                "--repeats",
                str(args.repeats),
                "--model",
                args.model,
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = {
                "tokens": n,
                "variant": variant,
                **json.loads(out.stdout.strip().splitlines()[-1]),
            }
            results.append(row)
            print(f"  {n:5d} tokens {variant:18s} {row['seconds']:7.3f} s", flush=True)
    base = {(r["tokens"], r["variant"]): r for r in results}
    header = (
        "tokens",
        "variant",
        "s/text",
        "texts/s",
        "peak MB",
        "x forward",
        "x out_attn",
        "MB x o_a",
    )
    print("\n{:>6} {:18} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9}".format(*header))
    for r in results:
        f = base.get((r["tokens"], "forward"))
        o = base.get((r["tokens"], "output_attentions"))
        r["ratio_to_forward"] = r["seconds"] / f["seconds"] if f else None
        r["ratio_to_output_attentions"] = r["seconds"] / o["seconds"] if o else None
        r["memory_ratio_to_output_attentions"] = r["peak_rss_mb"] / o["peak_rss_mb"] if o else None
        ratios = [
            r["ratio_to_forward"],
            r["ratio_to_output_attentions"],
            r["memory_ratio_to_output_attentions"],
        ]
        cells = " ".join("{:>10}".format(f"{x:.2f}" if x is not None else "-") for x in ratios)
        line = f"{r['tokens']:6d} {r['variant']:18} {r['seconds']:8.3f} {1 / r['seconds']:8.2f}"
        print(f"{line} {r['peak_rss_mb']:8.0f} {cells}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"model": args.model, "repeats": args.repeats, "results": results}, f, indent=1
            )


if __name__ == "__main__":
    main()
