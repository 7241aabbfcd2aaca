"""Time of a cross-validation of the logistic calibrator, against the same fits with torch's
default thread count, idle and with one core kept busy by another process.

A cross-validation fits every logistic scorer once per fold and weight decay (10 folds x 6
scorers x 5 strengths = 300 fits on CHAMP), so the fit's thread setting decides its cost.
``LogisticCalibrator`` fits on one intra-op thread; this script measures why, on synthetic
features of an experiment's shape (``--records`` x ``--features``, the default a head-mean
store on the embedded model):

    python benchmarks/bench_fit.py --json out.json   # ~1 min on 2 cores

``ratio`` is the default-threads time over the one-thread time of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_extract import BusyCore  # noqa: E402

from probes import crossval  # noqa: E402
from probes import threads as threads_module  # noqa: E402
from probes.config import ScorerSpec  # noqa: E402
from probes.estimators import logistic  # noqa: E402
from probes.featuredata import SplitArrays  # noqa: E402


def synthetic(n: int, f: int, seed: int = 0) -> tuple[SplitArrays, list[str]]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, f)) + 0.3 * y[:, None] * (rng.random(f) < 0.05)
    data = SplitArrays(
        torch.tensor(X),
        torch.tensor(y),
        [f"g{i // 2}" for i in range(n)],
        [str(i) for i in range(n)],
    )
    return data, [f"eig_low/L{j // 10:02d}/k{j % 10}" for j in range(f)]


def time_cv(data, names, folds: int, threads: int | None) -> float:
    """Seconds for one cross-validation of a logistic scorer; ``threads`` None: torch's
    default count inside the fits (the one-thread setting patched out)."""
    spec = ScorerSpec("lr", "logistic", select=("*",))
    plan = crossval.plan_folds(data.y.tolist(), data.groups, folds)
    original = threads_module.torch_threads
    patch = (
        mock.patch.object(logistic, "torch_threads", lambda n: original(None))
        if threads is None
        else contextlib.nullcontext()
    )
    with patch:
        start = time.perf_counter()
        crossval.cross_validate([spec], names, data, plan, progress=False)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--features", type=int, default=1500)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    data, names = synthetic(args.records, args.features)
    time_cv(data, names, 2, 1)  # warm-up: imports, first Trainer
    rows = []
    for load in (False, True):
        with BusyCore() if load else contextlib.nullcontext():
            one = time_cv(data, names, args.folds, 1)
            default = time_cv(data, names, args.folds, None)
        rows.append(
            {
                "load": "one core busy" if load else "idle",
                "one_thread_s": one,
                "default_threads_s": default,
                "default_threads": torch.get_num_threads(),
                "ratio": default / one,
            }
        )
        print(
            f"{rows[-1]['load']:14} 1 thread {one:6.2f} s   {torch.get_num_threads()} threads "
            f"{default:6.2f} s   ratio {default / one:5.2f}",
            flush=True,
        )
    report = {
        "records": args.records,
        "features": args.features,
        "folds": args.folds,
        "machine": platform.platform(),
        "torch": torch.__version__,
        "results": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
