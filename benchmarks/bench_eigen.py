"""The ends of the spectrum: dense float64 ``eigvalsh`` against the certified mixed method
(``probes.eigen``), on real per-head graphs, one thread each, as the capture's solver
workers run them.

For each length ``T`` a CHAMP text is cut to ``T`` tokens and read by the embedded model;
the graphs are ``L_sym`` of every head of four layers spread over the model (36 graphs).
Both methods solve the same batches, alternating, ``--repeats`` times; the table gives the
median ms per graph, the ratio dense / mixed, the mixed method's largest error against the
dense values, and its fallbacks. The exponent ``b`` of ``time ~ T^b`` is fitted on the
lengths from 256 on. ``auto`` uses ``mixed`` only in the range of ``T`` where it was
measured faster (``probes.eigen.MIXED_RANGE``).

GPU section: when CUDA is present, the same graphs are also solved there (the float32
stage is a batched ``eigh`` on the device; both methods synchronize before the clock
stops), and ``MIXED_RANGE['cuda']`` should be set from those rows. Without CUDA (as on
the machines this project is built on) the section is skipped and says so.

    python benchmarks/bench_eigen.py --json out.json      # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

LAYERS = (0, 10, 20, 29)


def graphs_of(lm, ids: list[int]):
    """``(len(LAYERS) * H, T, T)`` float64 ``L_sym`` of every head of :data:`LAYERS`."""
    import torch

    from probes.spectral import normalized_laplacian, symmetrize

    with torch.inference_mode():
        out = lm.model(input_ids=torch.tensor([ids]), output_attentions=True, use_cache=False)
    layers = [i for i in LAYERS if i < len(out.attentions)]
    A = torch.cat([out.attentions[i][0] for i in layers]).double()
    return normalized_laplacian(symmetrize(A))


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def fit_exponent(rows: list[dict], key: str, start: int = 256) -> float | None:
    pts = [(math.log(r["tokens"]), math.log(r[key])) for r in rows if r["tokens"] >= start]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def measure(L, T: int, device: str, repeats: int) -> dict:
    """Dense and mixed on the same ``(G, T, T)`` batch, alternating; one thread on CPU."""
    import torch

    from probes import eigen
    from probes.threads import torch_threads

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def dense():
        vals = torch.linalg.eigvalsh(L)
        sync()
        return vals

    def mixed():
        ends = eigen.extreme_eigvals(L, 5, 4, "mixed")
        sync()
        return ends

    G = L.shape[0]
    with torch_threads(1 if device == "cpu" else None):
        eigen.extreme_eigvals(L[:2], 5, 4, "mixed")  # warm-up
        dense()
        dense_s, mixed_s = [], []
        for _ in range(repeats):  # alternate: drift hits both alike
            s, vals = timed(dense, 1)
            dense_s.append(s)
            s, ends = timed(mixed, 1)
            mixed_s.append(s)
    low_err = float((ends.low - vals[:, :5]).abs().max())
    err = max(low_err, float((ends.high - vals[:, -4:]).abs().max()))
    row = {
        "tokens": T,
        "device": device,
        "graphs": G,
        "dense_ms": 1e3 * statistics.median(dense_s) / G,
        "mixed_ms": 1e3 * statistics.median(mixed_s) / G,
        "max_abs_error": err,
        "fallbacks": ends.fallbacks,
    }
    row["speedup"] = row["dense_ms"] / row["mixed_ms"]
    print(
        f"{device:4s} {T:5d} tokens: dense {row['dense_ms']:8.2f} ms/graph, mixed"
        f" {row['mixed_ms']:8.2f} ({row['speedup']:.2f}x), max error {err:.1e},"
        f" fallbacks {ends.fallbacks}/{G}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tokens",
        type=int,
        nargs="+",
        default=[128, 256, 384, 512, 640, 768, 896, 1024, 1152, 1280, 1536, 2048],
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    import torch

    from probes import eigen
    from probes.data import BUILDERS
    from probes.models import load_frozen

    lm = load_frozen(args.model)
    records = BUILDERS["champ"](seed=0)
    tokenize = lm.tokenizer
    texts = sorted(
        (tokenize(r.full_text, add_special_tokens=False)["input_ids"] for r in records), key=len
    )
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if len(devices) == 1:
        print("no CUDA device: the GPU section is skipped", flush=True)
    rows = []
    for T in args.tokens:
        ids = next((t for t in texts if len(t) >= T), None)
        if ids is None:
            print(f"{T}: no text that long", file=sys.stderr)
            continue
        for device in devices:
            L = graphs_of(lm, ids[:T]).to(device)
            rows.append(measure(L, T, device, args.repeats))
    cpu_rows = [r for r in rows if r["device"] == "cpu"]
    exponents = {k: fit_exponent(cpu_rows, f"{k}_ms") for k in ("dense", "mixed")}
    faster = [r["tokens"] for r in cpu_rows if r["speedup"] > 1]
    print(
        f"exponent (T >= 256): dense {exponents['dense']:.2f}, mixed {exponents['mixed']:.2f};"
        f" mixed faster from T = {min(faster) if faster else '-'}"
        f" (probes.eigen.MIXED_RANGE['cpu'] = {eigen.MIXED_RANGE['cpu']})"
    )
    if args.json:
        report = {"model": args.model, "rows": rows, "exponents": exponents}
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
