"""Grouped, stratified K-fold cross-validation: every record gets one out-of-fold prediction.

One split leaves few test records (19 valid solutions in CHAMP's test split) and uses 60% of
the data for training. Cross-validation tests on every record once:

* the records (all splits of the store, skipped ones left out) are cut into K folds of whole
  groups, each fold's class balance following the whole set's (:func:`plan_folds`, with the
  same rule as the single split, :func:`probes.data.splits.partition`);
* for fold k, the other folds are split again into train and calib, in ``data.fractions``'
  train : calib ratio; every scorer is fitted there exactly as on the single split
  (:func:`probes.fitting.fit_scorer`), so everything that reads labels stays inside the
  fold: the threshold's feature, the weight decay, early stopping, the prior shift and the
  temperature;
* fold k's records are then predicted by that fold's scorers.

The pooled out-of-fold predictions are evaluated like a test split (grouped bootstrap
intervals); the per-fold metrics give the spread across folds. Pooling probabilities from K
models assumes they are calibrated alike, which each fold's temperature on its own calib
aims for; a fold whose model is scaled differently costs pooled AUROC, never inflates it.

:func:`refit` fits a scorer on all records for export. A logistic one uses the weight decay
chosen most often across folds, the median number of epochs, and a temperature fitted on
the pooled out-of-fold logits (no record is left to calibrate on); its expected quality is
the cross-validated one. A threshold is refitted with all records as its calib split.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import ScorerSpec
from .errors import DataError
from .estimators import LogisticCalibrator
from .featuredata import SplitArrays, select_features
from .fitting import FittedScorer, fit_scorer
from .metrics import METRICS, evaluate_scores, point_metrics

#: What a fold's fit chose, one column each in ``folds.csv`` (empty where it does not apply).
CHOSEN = ("feature", "threshold", "weight_decay", "temperature", "prior_shift", "epochs")

#: ``eval.cv: auto``: 10 folds below this many records of the smaller class, else 5.
AUTO_SMALL = 200
#: ``eval.cv: auto``: fewer folds rather than a test fold with fewer such records.
AUTO_MIN_PER_FOLD = 5


def choose_k(cv: int | str, labels: Sequence[int]) -> int:
    """The number of folds ``eval.cv`` stands for; 0 is the single split.

    ``auto``: 10 folds when the smaller class holds fewer than :data:`AUTO_SMALL` records
    (there, each record held out of training costs most, and a tenth of the data per fold
    still leaves every test fold a few of the smaller class), else 5 (the intervals come
    from the pooled predictions, so more folds would only cost time). Fewer folds when a
    test fold would hold fewer than :data:`AUTO_MIN_PER_FOLD` records of the smaller class;
    below two such folds, the single split.
    """
    if cv != "auto":
        return int(cv)
    counts = Counter(int(v) for v in labels)
    n_min = min(counts.values()) if len(counts) == 2 else 0
    k = min(10 if n_min < AUTO_SMALL else 5, n_min // AUTO_MIN_PER_FOLD)
    return k if k >= 2 else 0


@dataclass(frozen=True)
class Fold:
    """One fold: row indices into the pooled records."""

    train: np.ndarray
    calib: np.ndarray
    test: np.ndarray


def plan_folds(
    labels: Sequence[int],
    groups: Sequence[str],
    k: int,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> list[Fold]:
    """``k`` folds of whole groups, stratified; inside each, the remaining rows split into
    train and calib in the ratio ``fractions[0] : fractions[1]`` (the test share is not
    used: the test part is the fold). Fold k's inner split is seeded ``seed + 1 + k``."""
    from .data.splits import partition

    labels = [int(v) for v in labels]
    groups = list(groups)
    part = np.asarray(partition(groups, labels, [1 / k] * k, seed))
    fit_share = fractions[0] + fractions[1]
    inner = (fractions[0] / fit_share, fractions[1] / fit_share)
    folds = []
    for j in range(k):
        test = np.flatnonzero(part == j)
        rest = np.flatnonzero(part != j)
        sub = np.asarray(
            partition([groups[i] for i in rest], [labels[i] for i in rest], inner, seed + 1 + j)
        )
        folds.append(Fold(train=rest[sub == 0], calib=rest[sub == 1], test=test))
    return folds


def check_folds(folds: Sequence[Fold], groups: Sequence[str]) -> None:
    """The guard against leakage: every row is tested in exactly one fold, and inside each
    fold train, calib and test are disjoint, cover every row and share no group. Raises
    ``ValueError``."""
    n = len(groups)
    tested = np.concatenate([f.test for f in folds]) if folds else np.array([], int)
    if len(tested) != n or len(np.unique(tested)) != n:
        raise ValueError(
            f"folds test {len(np.unique(tested))} distinct rows {len(tested)} times; every "
            f"one of the {n} rows must be tested exactly once"
        )
    g = np.asarray(groups)
    for j, f in enumerate(folds):
        parts = {"train": f.train, "calib": f.calib, "test": f.test}
        rows = np.concatenate(list(parts.values()))
        if len(rows) != n or len(np.unique(rows)) != n:
            raise ValueError(f"fold {j}: train, calib and test overlap or miss rows")
        seen: dict[str, str] = {}
        for name, idx in parts.items():
            for group in set(g[idx].tolist()):
                if seen.setdefault(group, name) != name:
                    raise ValueError(
                        f"fold {j}: group {group!r} is in both {seen[group]} and {name}"
                    )


def check_classes(folds: Sequence[Fold], labels: Sequence[int], where: str) -> None:
    """Every fold's train, calib and test part holds both classes; else a :class:`DataError`
    that says what to change."""
    y = np.asarray(labels)
    for j, f in enumerate(folds):
        for name, idx in (("train", f.train), ("calib", f.calib), ("test", f.test)):
            if len(set(y[idx].tolist())) < 2:
                what = "is empty" if not len(idx) else f"holds {len(idx)} record(s) of one class"
                raise DataError(
                    f"{where}: with eval.cv {len(folds)}, fold {j}'s {name} part {what} "
                    f"({len(y)} records, {int((y == 1).sum())} valid); lower eval.cv, or set "
                    "eval.cv: 0 for the single split"
                )


def subset(data: SplitArrays, rows: np.ndarray) -> SplitArrays:
    """The records at ``rows`` of ``data``."""
    idx = torch.as_tensor(rows, dtype=torch.long)
    return SplitArrays(
        X=data.X[idx],
        y=data.y[idx],
        groups=[data.groups[i] for i in rows],
        ids=[data.ids[i] for i in rows],
    )


def concat(parts: Sequence[SplitArrays]) -> SplitArrays:
    """The records of several splits, in order."""
    return SplitArrays(
        X=torch.cat([p.X for p in parts]),
        y=torch.cat([p.y for p in parts]),
        groups=[g for p in parts for g in p.groups],
        ids=[i for p in parts for i in p.ids],
    )


@dataclass
class CrossValidation:
    """Out-of-fold predictions of every scorer over ``data`` (all records).

    ``probs[name] (N,)`` P(valid); ``decisions[name] (N,)`` 0/1 at the fold model's
    threshold; ``logits[name] (N,)`` logits before temperature (logistic scorers only);
    ``fold_rows``: one row per (scorer, fold) with its test metrics and what it chose.
    """

    data: SplitArrays
    folds: list[Fold]
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    decisions: dict[str, np.ndarray] = field(default_factory=dict)
    logits: dict[str, np.ndarray] = field(default_factory=dict)
    fold_rows: list[dict] = field(default_factory=list)

    @property
    def k(self) -> int:
        return len(self.folds)

    def fold_of(self) -> np.ndarray:
        """``(N,)`` the fold that tested each record."""
        out = np.zeros(len(self.data.y), dtype=np.int64)
        for j, f in enumerate(self.folds):
            out[f.test] = j
        return out


def cross_validate(
    specs: Sequence[ScorerSpec],
    names: list[str],
    data: SplitArrays,
    folds: Sequence[Fold],
    progress: bool = True,
) -> CrossValidation:
    """Fit every scorer in every fold (on its train and calib parts) and predict its test
    part; nothing in a fold's fit reads a row of its test part (:func:`check_folds`)."""
    check_folds(folds, data.groups)
    n = len(data.y)
    cv = CrossValidation(data, list(folds))
    X = data.X.numpy()
    bar = tqdm(total=len(folds) * len(specs), desc="cross-validation", disable=not progress)
    for spec in specs:
        cv.probs[spec.name] = np.full(n, np.nan)
        cv.decisions[spec.name] = np.zeros(n, dtype=np.int64)
        if spec.kind == "logistic":
            cv.logits[spec.name] = np.full(n, np.nan)
    for j, fold in enumerate(folds):
        train, calib = subset(data, fold.train), subset(data, fold.calib)
        Xt, yt = X[fold.test], data.y.numpy()[fold.test]
        for spec in specs:
            fitted = fit_scorer(spec, names, train, calib)
            p = fitted.predict_proba(Xt)[:, 1]
            decision = fitted.predict(Xt)
            cv.probs[spec.name][fold.test] = p
            cv.decisions[spec.name][fold.test] = decision
            if isinstance(fitted.model, LogisticCalibrator):
                z = fitted.model.logit_before_temperature(Xt[:, fitted.columns])
                cv.logits[spec.name][fold.test] = z
            chosen = fitted.describe()
            cv.fold_rows.append(
                {
                    "scorer": spec.name,
                    "fold": j,
                    "n_train": len(fold.train),
                    "n_calib": len(fold.calib),
                    "n_test": len(fold.test),
                    **point_metrics(p, yt, decision),
                    **{key: chosen.get(key) for key in CHOSEN},
                }
            )
            bar.update()
    bar.close()
    return cv


def fold_summary(rows: Sequence[dict], scorer: str) -> dict[str, float]:
    """``<metric>_fold_mean`` and ``<metric>_fold_sd`` (sample sd) of ``scorer`` across
    folds; a fold where a metric is undefined is left out and counted
    (``<metric>_folds_undefined``)."""
    out: dict[str, float] = {}
    for m in METRICS:
        vals = np.array([r[m] for r in rows if r["scorer"] == scorer], dtype=np.float64)
        ok = vals[np.isfinite(vals)]
        out[f"{m}_fold_mean"] = float(ok.mean()) if len(ok) else float("nan")
        out[f"{m}_fold_sd"] = float(ok.std(ddof=1)) if len(ok) > 1 else float("nan")
        if len(ok) < len(vals):
            out[f"{m}_folds_undefined"] = len(vals) - len(ok)
    return out


def pooled_metrics(cv: CrossValidation, n_boot: int, seed: int) -> dict[str, dict]:
    """Per scorer: the metrics of the pooled out-of-fold predictions with grouped bootstrap
    intervals, the per-fold mean and sd, and what the folds chose (the most common
    threshold feature or weight decay)."""
    y = cv.data.y.numpy()
    out = {}
    for name, p in cv.probs.items():
        rows = [r for r in cv.fold_rows if r["scorer"] == name]
        chosen = {}
        for key in ("feature", "weight_decay"):
            if rows[0][key] is not None:
                chosen[key] = Counter(r[key] for r in rows).most_common(1)[0][0]
        out[name] = {
            **evaluate_scores(p, y, cv.decisions[name], cv.data.groups, n_boot, seed),
            **fold_summary(cv.fold_rows, name),
            **chosen,
            "folds": cv.k,
        }
    return out


def refit(spec: ScorerSpec, names: list[str], cv: CrossValidation) -> FittedScorer:
    """``spec`` fitted on all of ``cv.data`` for export (see the module docstring)."""
    data = cv.data
    if spec.kind == "threshold":
        return fit_scorer(spec, names, data, data)
    rows = [r for r in cv.fold_rows if r["scorer"] == spec.name]
    strengths = Counter(r["weight_decay"] for r in rows)
    wd = max(strengths, key=lambda w: (strengths[w], w))  # ties: the stronger penalty
    epochs = max(1, round(statistics.median(r["epochs"] for r in rows)))
    cols = select_features(names, spec.select)
    # No calib split is left: no early stopping (the folds' median number of steps), and
    # the temperature comes from the pooled out-of-fold logits.
    model = LogisticCalibrator(
        weight_decay=float(wd),
        temperature=False,
        prior_correction=spec.prior_correction,
        max_epochs=epochs,
    ).fit(data.X.numpy()[:, cols], data.y.numpy())
    if spec.temperature:
        model.set_temperature(cv.logits[spec.name], data.y.numpy())
    return FittedScorer(spec, model, [names[j] for j in cols], cols)
