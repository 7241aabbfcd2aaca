"""Metrics of step-level scores: where in a solution is the first error?

Every function takes, per solution, ``scores`` (one P(step is wrong) per step, in order)
and ``wrong`` (the index of the first wrong step, ``None`` for a valid solution).

* :func:`step_auroc`: the first wrong step against the correct steps before it, pooled
  over the invalid solutions (the steps after the first error are left out: their label is
  not known, an error carried on may or may not make them wrong).
* :func:`top_k_accuracy`: the share of invalid solutions whose first wrong step is among
  their ``k`` highest-scored steps.
* :func:`processbench_f1`: ProcessBench's F1 (Zheng et al., 2024, "ProcessBench:
  Identifying Process Errors in Mathematical Reasoning"): a solution's prediction is the
  first step scored at or above the threshold, or "all correct" if none is; the F1 is the
  harmonic mean of the accuracy on invalid solutions (exactly the labelled step) and on
  valid ones (exactly "all correct"). :func:`choose_threshold` picks the threshold on calib.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .metrics import auroc

Scores = Sequence[Sequence[float]]
Labels = Sequence[int | None]


def step_auroc(scores: Scores, wrong: Labels) -> float:
    """AUROC of the first wrong steps (positives) against the correct steps before them
    (negatives), pooled over the invalid solutions; NaN without both."""
    pos, neg = [], []
    for s, w in zip(scores, wrong, strict=True):
        if w is None:
            continue
        pos.append(s[w])
        neg.extend(s[:w])
    if not pos or not neg:
        return float("nan")
    values = np.array(pos + neg, dtype=np.float64)
    labels = np.array([1] * len(pos) + [0] * len(neg))
    return auroc(values, labels)


def top_k_accuracy(scores: Scores, wrong: Labels, k: int = 1) -> float:
    """Share of invalid solutions whose first wrong step is among their ``k`` highest
    scores (ties broken towards the earlier step, as a reader scanning top-down would)."""
    hits = []
    for s, w in zip(scores, wrong, strict=True):
        if w is None:
            continue
        order = sorted(range(len(s)), key=lambda i: (-s[i], i))
        hits.append(w in order[:k])
    return float(np.mean(hits)) if hits else float("nan")


def first_flagged(scores: Sequence[float], threshold: float) -> int | None:
    """The first step scored ``>= threshold``; ``None`` ("all steps correct") if none."""
    return next((i for i, p in enumerate(scores) if p >= threshold), None)


def processbench_f1(scores: Scores, wrong: Labels, threshold: float) -> dict[str, float]:
    """``{"f1", "acc_invalid", "acc_valid"}`` at ``threshold`` (see the module docstring)."""
    return processbench_calls([first_flagged(s, threshold) for s in scores], wrong)


def processbench_calls(flagged: Sequence[int | None], wrong: Labels) -> dict[str, float]:
    """ProcessBench's F1 of per-solution calls (the flagged step, ``None`` for "all
    correct"), each made at its own fit's threshold (pooled cross-validation folds)."""
    invalid, valid = [], []
    for f, w in zip(flagged, wrong, strict=True):
        (valid if w is None else invalid).append(f == w)
    a_inv = float(np.mean(invalid)) if invalid else float("nan")
    a_val = float(np.mean(valid)) if valid else float("nan")
    f1 = 0.0 if a_inv + a_val == 0 else 2 * a_inv * a_val / (a_inv + a_val)
    return {"f1": f1, "acc_invalid": a_inv, "acc_valid": a_val}


def choose_threshold(scores: Scores, wrong: Labels) -> float:
    """The threshold with the best ProcessBench F1 on these (calib) solutions, among the
    scores themselves and one above them all; ties keep the highest threshold."""
    candidates = sorted({float(p) for s in scores for p in s} | {np.inf}, reverse=True)
    best = max(candidates, key=lambda t: (processbench_f1(scores, wrong, t)["f1"], t))
    return float(best)
