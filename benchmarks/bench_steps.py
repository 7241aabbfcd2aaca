"""What per-step features cost: the capture with ``capture.steps`` against the same capture
without, on the same records in the same process.

    python benchmarks/bench_steps.py --json docs/benchmark-steps.json   # embedded model

Each step adds, per step layer, the Fiedler values of its own block and of the prefix up to
it (``probes.stepfeatures``): on long solutions with many steps the prefix solves dominate,
so the cost grows with the number of step layers. ``ratio`` is a variant's seconds per
record over the plain capture's, measured in this run (repeats alternate the variants, so
load on the machine falls on all of them alike).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from probes.capture import SpectralCapture
from probes.config import CaptureConfig, ModelConfig
from probes.data import BUILDERS, load_records
from probes.models import load_frozen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--records", default="champ", help="a builder name or a JSONL file")
    parser.add_argument("--n", type=int, default=8, help="records timed")
    parser.add_argument("--max-tokens", dest="max_tokens", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--step-layers",
        dest="step_layers",
        type=int,
        nargs="+",
        default=[0, 5, 10, 15, 20, 25],
        help="the few-layer variant's step layers (valid for the model)",
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if Path(args.records).is_file():
        records = load_records(args.records)
    else:
        records = BUILDERS[args.records](seed=0)
    records = [r for r in records if r.solution_start is not None][: args.n]
    lm = load_frozen(ModelConfig(args.model, device="cpu"), device="cpu")
    base = {"span": "solution", "max_tokens": args.max_tokens, "probe_layer": None}
    variants = {
        "no_steps": CaptureConfig(**base),
        "steps_all_layers": CaptureConfig(**base, steps="lines"),
        "steps_few_layers": CaptureConfig(
            **base, steps="lines", step_layers=tuple(args.step_layers)
        ),
    }
    captures = {k: SpectralCapture(lm, cfg) for k, cfg in variants.items()}
    times = {k: [] for k in variants}
    steps = tokens = 0
    for _ in range(args.repeats):
        for name, cap in captures.items():
            start = time.perf_counter()
            ex = cap.extract_records(records, batch_size=4)
            times[name].append(time.perf_counter() - start)
            steps, tokens = sum(len(s) for s in ex.steps), int(ex.n_tokens.sum())
    best = {k: min(v) / len(records) for k, v in times.items()}
    rows = [
        {
            "variant": k,
            "seconds_per_record": best[k],
            "ratio": best[k] / best["no_steps"],
            "step_layers": len(captures[k].step_layers),
        }
        for k in variants
    ]
    report = {
        "model": args.model,
        "records": len(records),
        "steps": steps,
        "tokens": tokens,
        "layers": lm.n_layers,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "results": rows,
    }
    for r in rows:
        print(
            f"{r['variant']:18s} {r['step_layers']:3d} step layers  "
            f"{r['seconds_per_record']:.3f} s/record  x{r['ratio']:.2f}"
        )
    print(f"{len(records)} records, {steps} steps, {tokens} tokens")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
