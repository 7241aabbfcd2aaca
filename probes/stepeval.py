"""Step localisation: the step scorer and its baselines, fitted and measured on one split or
by grouped cross-validation, with grouped bootstrap intervals.

Data: a store's step table (``probes.store.StepTable``), the steps that were read (a step
cut off by truncation is left out; an invalid record whose first wrong step was not read
counts for the solution-level AUROC only), with two derived columns:
``step_confound/position`` (``k / (S - 1)`` for step ``k`` of ``S``, 0 for one step) and
``step_baseline/random`` (uniform noise, seeded: a feature that knows nothing).

Scorers (:data:`STEP_SCORERS`), all :class:`probes.estimators.step.StepScorer`:

* ``step_spectral``: logistic on the per-step graph features (``step/*``);
* ``step_spectral_confounds``: those plus the step confounds and the position;
* ``step_confounds``: logistic on token count, mean log-prob, mean entropy and position;
* ``step_logprob``, ``step_entropy``: one confound each, their sign chosen on train;
  ``last_step`` and ``first_step``: the position (the later, or the earlier, the more
  suspect); ``random``: the noise column.

Metrics (of P(step wrong), per solution; ``probes.stepmetrics``): ``step_auroc`` (the first
wrong step against the correct steps before it), ``step_auroc_all`` (against those and every
step of the valid solutions: a later-is-worse score cannot win this one by position alone),
``top1``, ``top3``, ProcessBench's ``pb_f1`` with ``pb_acc_invalid``, ``pb_acc_valid`` (the
threshold chosen on each fit's calib split), and ``solution_auroc`` of the aggregated
P(valid). The paired intervals compare ``step_spectral`` with the best baseline of each
metric *on the evaluated records*: the choice favours the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .crossval import check_folds, choose_k, plan_folds
from .estimators.step import StepArrays, StepScorer
from .featuredata import select_features
from .metrics import auroc, group_resamples, percentile_interval
from .stepmetrics import first_flagged, processbench_calls, step_auroc, top_k_accuracy
from .steps import STEP_POSITION as POSITION
from .steps import positions

RANDOM = "step_baseline/random"


@dataclass(frozen=True)
class StepSpec:
    """One step scorer: its name, ``StepScorer`` kind and feature patterns; ``direction``
    fixes a feature's sign (``None``: chosen on train)."""

    name: str
    kind: str
    select: tuple[str, ...]
    direction: float | None = None


STEP_SCORERS = (
    StepSpec("step_spectral", "logistic", ("step/*",)),
    StepSpec("step_spectral_confounds", "logistic", ("step/*", "step_confound/*")),
    StepSpec("step_confounds", "logistic", ("step_confound/*",)),
    StepSpec("step_logprob", "feature", ("step_confound/logprob",)),
    StepSpec("step_entropy", "feature", ("step_confound/entropy",)),
    StepSpec("last_step", "feature", (POSITION,), direction=1.0),
    StepSpec("first_step", "feature", (POSITION,), direction=-1.0),
    StepSpec("random", "feature", (RANDOM,)),
)
#: The spectral step scorer that the paired intervals are about.
SPECTRAL = "step_spectral"
#: What it is compared with.
BASELINES = (
    "step_confounds",
    "step_logprob",
    "step_entropy",
    "last_step",
    "first_step",
    "random",
)
METRICS = (
    "step_auroc",
    "step_auroc_all",
    "top1",
    "top3",
    "pb_f1",
    "pb_acc_invalid",
    "pb_acc_valid",
    "solution_auroc",
)

#: The metrics compared in pairs (each of ProcessBench's two accuracies alone is won by a
#: scorer that always, or never, flags a step).
PAIRED = ("step_auroc", "step_auroc_all", "top1", "top3", "pb_f1", "solution_auroc")


def store_step_arrays(data, seed: int = 0) -> tuple[StepArrays, list[str]]:
    """The read steps of every non-skipped record of a store (``StoredFeatures`` with a
    step table), with the derived columns; returns the arrays and their column names."""
    table = data.steps
    if table is None:
        raise ValueError("the store has no step table (extract with capture.steps set)")
    counts = np.bincount(table.record.numpy(), minlength=len(data.ids))
    step = table.step.numpy()
    rec = table.record.numpy()
    spans = table.spans.numpy()
    keep = (spans[:, 3] > spans[:, 2]) & ~data.skipped.numpy()[rec]
    rows = np.flatnonzero(~data.skipped.numpy())
    remap = np.full(len(data.ids), -1)
    remap[rows] = np.arange(len(rows))
    noise = np.random.default_rng(seed).random(len(step))
    X = np.concatenate(
        [table.values.numpy(), positions(step, counts[rec])[:, None], noise[:, None]], axis=1
    )
    arrays = StepArrays(
        X=X[keep],
        labels=table.labels.numpy()[keep],
        record=remap[rec[keep]],
        valid=data.labels.numpy()[rows],
        ids=[data.ids[i] for i in rows],
        groups=[data.groups[i] for i in rows],
        step=step[keep],
        spans=spans[keep],
    )
    return arrays, [*table.names, POSITION, RANDOM]


def _columns(arrays: StepArrays, names: list[str], spec: StepSpec) -> StepArrays:
    cols = select_features(names, spec.select)
    return StepArrays(
        arrays.X[:, cols],
        arrays.labels,
        arrays.record,
        arrays.valid,
        arrays.ids,
        arrays.groups,
        arrays.step,
        arrays.spans,
    )


def fit_step_scorer(spec: StepSpec, names, train: StepArrays, calib: StepArrays, logger=False):
    """A :class:`StepScorer` of ``spec`` on ``train``, calibrated on ``calib``."""
    scorer = StepScorer(spec.kind, direction=spec.direction)
    return scorer.fit(_columns(train, names, spec), _columns(calib, names, spec), logger=logger)


@dataclass
class StepPredictions:
    """One scorer's predictions of ``R`` evaluated records: ``p_wrong`` ``(M,)`` per step,
    ``p_valid`` ``(R,)``, ``flagged`` ProcessBench's call per record (the first step at or
    above its fit's threshold, ``None`` for "all correct")."""

    p_wrong: np.ndarray
    p_valid: np.ndarray
    flagged: list[int | None]


def predict(scorer: StepScorer, spec: StepSpec, names, arrays: StepArrays) -> StepPredictions:
    arrays = _columns(arrays, names, spec)
    p = scorer.step_proba(arrays.X)
    flagged = [first_flagged(s, scorer.threshold_) for s in arrays.per_record(p)]
    return StepPredictions(p, scorer.predict_proba(arrays)[:, 1], flagged)


@dataclass
class _Records:
    """One scorer's predictions, per record, read once for many resamples."""

    scores: list[np.ndarray]  # P(wrong) of each record's steps
    wrong: list[int | None]
    localised: np.ndarray
    valid: np.ndarray
    flagged: list[int | None]
    p_valid: np.ndarray

    @classmethod
    def of(cls, arrays: StepArrays, pred: StepPredictions) -> _Records:
        return cls(
            arrays.per_record(pred.p_wrong),
            arrays.wrong(),
            arrays.localised(),
            arrays.valid,
            pred.flagged,
            pred.p_valid,
        )


def step_metrics(arrays: StepArrays, pred: StepPredictions, rows: np.ndarray | None = None):
    """Every metric of :data:`METRICS` on the records ``rows`` (default all; repeats
    allowed, as a bootstrap resample draws them)."""
    return _metrics(_Records.of(arrays, pred), rows)


def _metrics(rec: _Records, rows: np.ndarray | None = None) -> dict[str, float]:
    rows = np.arange(len(rec.valid)) if rows is None else np.asarray(rows)
    # Localisation is measured on the valid records and the invalid ones whose first
    # wrong step is among their read steps.
    here = [r for r in rows if rec.localised[r]]
    scores = [rec.scores[r] for r in here]
    wrong = [rec.wrong[r] for r in here]
    pb = processbench_calls([rec.flagged[r] for r in here], wrong)
    has_both = any(w is None for w in wrong) and any(w is not None for w in wrong)
    return {
        "step_auroc": step_auroc(scores, wrong),
        "step_auroc_all": _step_auroc_all(scores, wrong),
        "top1": top_k_accuracy(scores, wrong, 1),
        "top3": top_k_accuracy(scores, wrong, 3),
        "pb_f1": pb["f1"] if has_both else float("nan"),
        "pb_acc_invalid": pb["acc_invalid"],
        "pb_acc_valid": pb["acc_valid"],
        "solution_auroc": auroc(rec.p_valid[rows], rec.valid[rows]),
    }


def _step_auroc_all(scores, wrong) -> float:
    """The first wrong steps against the correct steps before them and every step of the
    valid solutions."""
    pos, neg = [], []
    for s, w in zip(scores, wrong, strict=True):
        if w is None:
            neg.extend(s)
        else:
            pos.append(s[w])
            neg.extend(s[:w])
    if not pos or not neg:
        return float("nan")
    return auroc(np.array(pos + neg), np.array([1] * len(pos) + [0] * len(neg)))


def with_intervals(
    arrays: StepArrays, preds: dict[str, StepPredictions], n_boot: int, seed: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """``(metrics, paired)``: every scorer's metrics with 95% grouped bootstrap intervals
    (``<metric>_lo``, ``_hi``), and for each metric ``step_spectral`` minus the best
    baseline on these records, with its interval from the same resamples."""
    records = {name: _Records.of(arrays, p) for name, p in preds.items()}
    point = {name: _metrics(r) for name, r in records.items()}
    samples = {name: {m: [] for m in METRICS} for name in preds}
    for pick in group_resamples(arrays.groups, n_boot, seed):
        for name, r in records.items():
            for m, v in _metrics(r, pick).items():
                samples[name][m].append(v)
    metrics = {}
    for name in preds:
        row = dict(point[name])
        for m in METRICS:
            row[f"{m}_lo"], row[f"{m}_hi"] = percentile_interval(samples[name][m])
        metrics[name] = row
    paired = {}
    if SPECTRAL in preds:
        for m in PAIRED:
            base = [b for b in BASELINES if b in preds and np.isfinite(point[b][m])]
            if not base or not np.isfinite(point[SPECTRAL][m]):
                continue
            best = max(base, key=lambda b: point[b][m])
            diffs = np.array(samples[SPECTRAL][m]) - np.array(samples[best][m])
            lo, hi = percentile_interval(diffs)
            paired[m] = {
                "baseline": best,
                "diff": point[SPECTRAL][m] - point[best][m],
                "lo": lo,
                "hi": hi,
            }
    return metrics, paired


def split_of(arrays: StepArrays, splits: Sequence[str], name: str) -> np.ndarray:
    """Record rows of one split."""
    return np.flatnonzero(np.asarray(splits) == name)


def evaluate_steps(
    arrays: StepArrays,
    names: list[str],
    splits: Sequence[str],
    cv: int | str = "auto",
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    n_boot: int = 500,
    specs: Sequence[StepSpec] = STEP_SCORERS,
    logger_for=None,
):
    """Fit and measure every step scorer.

    Args:
        arrays, names: :func:`store_step_arrays`.
        splits: ``R`` split names (``train``, ``calib``, ``test``) of the records.
        cv: ``eval.cv`` (``0``: the single split; ``K``: grouped K-fold over all records).
        logger_for: ``name -> Lightning logger or False`` for the single split's fits.

    Returns:
        A dict: ``evaluation`` (what was measured, as a line), ``folds`` (0: the single
        split), ``scorers`` (metrics with intervals),
        ``paired``, ``split_scorers`` (the single split's test metrics), ``fitted`` (the
        single split's scorers, for export), ``predictions`` (per step, evaluated records).
    """
    tr, ca, te = (split_of(arrays, splits, s) for s in ("train", "calib", "test"))
    train, calib, test = arrays.subset(tr), arrays.subset(ca), arrays.subset(te)
    fitted = {
        s.name: fit_step_scorer(s, names, train, calib, logger_for(s.name) if logger_for else False)
        for s in specs
    }
    split_preds = {s.name: predict(fitted[s.name], s, names, test) for s in specs}
    split_metrics, split_paired = with_intervals(test, split_preds, n_boot, seed)
    k = choose_k(cv, arrays.valid.tolist())
    if k:
        folds = plan_folds(arrays.valid.tolist(), arrays.groups, k, fractions, seed)
        check_folds(folds, arrays.groups)
        order = np.concatenate([f.test for f in folds])
        pooled = arrays.subset(order)
        parts: dict[str, list[StepPredictions]] = {s.name: [] for s in specs}
        bar = tqdm(total=k * len(specs), desc="step cross-validation", unit="fit")
        for f in folds:
            ftrain, fcalib, ftest = (arrays.subset(x) for x in (f.train, f.calib, f.test))
            for s in specs:
                scorer = fit_step_scorer(s, names, ftrain, fcalib)
                parts[s.name].append(predict(scorer, s, names, ftest))
                bar.update()
        bar.close()
        preds = {name: _concat(p) for name, p in parts.items()}
        metrics, paired = with_intervals(pooled, preds, n_boot, seed)
        evaluated, fold_of = (
            pooled,
            np.concatenate([np.full(len(f.test), j) for j, f in enumerate(folds)]),
        )
    else:
        metrics, paired, preds, evaluated = split_metrics, split_paired, split_preds, test
        fold_of = np.full(len(te), -1)
    return {
        "evaluation": _evaluation_text(k, evaluated),
        "folds": k,
        "scorers": metrics,
        "paired": paired,
        "split_scorers": split_metrics,
        "split_paired": split_paired,
        "fitted": fitted,
        "predictions": _prediction_rows(evaluated, preds, fold_of),
    }


def _concat(parts: list[StepPredictions]) -> StepPredictions:
    return StepPredictions(
        np.concatenate([p.p_wrong for p in parts]),
        np.concatenate([p.p_valid for p in parts]),
        [f for p in parts for f in p.flagged],
    )


def _evaluation_text(k: int, arrays: StepArrays) -> str:
    n_inv = int((arrays.valid == 0).sum())
    n_loc = int((arrays.localised() & (arrays.valid == 0)).sum())
    where = f"{k}-fold grouped cross-validation, pooled out-of-fold" if k else "the test split"
    return (
        f"step evaluation: {where}: {len(arrays)} records ({len(arrays) - n_inv} valid, "
        f"{n_inv} invalid, {n_loc} of them with their first wrong step read), "
        f"{len(arrays.labels)} steps"
    )


def _prediction_rows(arrays: StepArrays, preds: dict[str, StepPredictions], fold_of):
    rows = []
    for m in range(len(arrays.labels)):
        r = int(arrays.record[m])
        row = {
            "id": arrays.ids[r],
            "fold": int(fold_of[r]) if len(fold_of) else -1,
            "step": int(arrays.step[m]),
            "start": int(arrays.spans[m, 0]),
            "end": int(arrays.spans[m, 1]),
            "label": int(arrays.labels[m]),
        }
        row |= {f"p_wrong/{name}": float(p.p_wrong[m]) for name, p in preds.items()}
        rows.append(row)
    return rows


def step_table(metrics: dict[str, dict[str, float]]) -> str:
    """The comparison as text: each metric with its interval."""
    cols = ("step_auroc", "step_auroc_all", "top1", "top3", "pb_f1", "solution_auroc")
    head = f"{'step scorer':24s}" + "".join(f"{c:>22s}" for c in cols)
    lines = [head]
    for name, row in metrics.items():
        cells = "".join(f"{row[c]:>8.3f} [{row[c + '_lo']:.3f},{row[c + '_hi']:.3f}]" for c in cols)
        lines.append(f"{name:24s}{cells}")
    return "\n".join(lines)


def paired_text(paired: dict[str, dict[str, float]]) -> str:
    lines = [f"{SPECTRAL} minus the best baseline on these records (favours the baseline):"]
    for m, row in paired.items():
        lines.append(
            f"  {m:16s} vs {row['baseline']:16s} {row['diff']:+.3f} "
            f"[{row['lo']:+.3f}, {row['hi']:+.3f}]"
        )
    return "\n".join(lines)
