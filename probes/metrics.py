"""Evaluation metrics (torchmetrics) with grouped bootstrap intervals.

Point estimates come from torchmetrics' ``BinaryAUROC``, ``BinaryAveragePrecision`` and
``BinaryCalibrationError(n_bins=15, norm="l1")`` (functional forms), the Brier score and the
accuracy at the scorer's threshold. Intervals resample whole groups (problems), since the
records of one problem are not independent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_calibration_error,
)

METRICS = ("auroc", "auprc", "ece", "brier", "accuracy")


def point_metrics(p: np.ndarray, y: np.ndarray, decision: np.ndarray) -> dict[str, float]:
    """Metrics of P(valid) ``p (N,)`` against labels ``y (N,)``; ``decision (N,)`` is the
    scorer's 0/1 call at its threshold.

    Example:
        >>> m = point_metrics(np.array([0.9, 0.2, 0.6, 0.4]), np.array([1, 0, 1, 0]),
        ...                   np.array([1, 0, 1, 0]))
        >>> m["auroc"], m["accuracy"], round(m["brier"], 4)
        (1.0, 1.0, 0.0925)
    """
    pt = torch.as_tensor(p, dtype=torch.float64).contiguous()  # p is often a column view
    yt = torch.as_tensor(y, dtype=torch.long)
    single_class = len(torch.unique(yt)) < 2
    return {
        "auroc": float("nan") if single_class else float(binary_auroc(pt, yt)),
        "auprc": float("nan") if single_class else float(binary_average_precision(pt, yt)),
        "ece": float(binary_calibration_error(pt, yt, n_bins=15, norm="l1")),
        "brier": float(((pt - yt) ** 2).mean()),
        "accuracy": float((torch.as_tensor(decision) == yt).double().mean()),
    }


def grouped_bootstrap(
    p: np.ndarray,
    y: np.ndarray,
    decision: np.ndarray,
    groups: Sequence[str],
    n_boot: int = 500,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every metric, resampling groups with replacement."""
    groups = np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(n_boot):
        pick = np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])
        for name, value in point_metrics(p[pick], y[pick], decision[pick]).items():
            samples[name].append(value)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for name, vals in samples.items():
        arr = np.asarray(vals, dtype=np.float64)
        arr = arr[np.isfinite(arr)]  # single-class resamples give NaN AUROC
        if len(arr):
            out[name] = (float(np.percentile(arr, lo)), float(np.percentile(arr, hi)))
        else:
            out[name] = (float("nan"), float("nan"))
    return out


def evaluate_scores(
    p: np.ndarray,
    y: np.ndarray,
    decision: np.ndarray,
    groups: Sequence[str],
    n_boot: int = 500,
    seed: int = 0,
) -> dict[str, float | str]:
    """Every metric with its interval: ``{auroc, auroc_lo, auroc_hi, ...}``; a metric that
    is undefined (NaN) gets a ``<metric>_reason`` entry saying why."""
    point = point_metrics(p, y, decision)
    ci = grouped_bootstrap(p, y, decision, groups, n_boot, seed)
    out: dict[str, float | str] = {}
    for name in METRICS:
        out[name] = point[name]
        out[f"{name}_lo"], out[f"{name}_hi"] = ci[name]
        if np.isnan(point[name]):
            out[f"{name}_reason"] = "undefined: the sample holds one class"
        elif np.isnan(ci[name][0]):
            out[f"{name}_lo_reason"] = out[f"{name}_hi_reason"] = (
                "undefined: no bootstrap resample held both classes"
            )
    return out
