"""``StepScorer``: P(step is wrong) for each step, and P(solution valid) from its steps.

Fitted on the read steps of the train split whose label is known (a solution's first wrong
step against the steps before it and every step of the valid solutions; the steps after the
first error are left out: an error carried on may or may not make them wrong):

* ``kind="logistic"``: a :class:`LogisticCalibrator` on the step features (class-balanced,
  prior-corrected, weight decay chosen and temperature fitted on the calib split's steps);
* ``kind="feature"``: one feature, its sign given (``direction``) or chosen on train (the
  direction whose step AUROC is at least 1/2), mapped to a probability by Platt scaling on
  the calib steps that keeps that sign.

Either way ``P(wrong) = sigmoid((w . (x - mean) / std + b) / T)``, the bundle's one form. A
missing feature (the last step receives no attention from later steps: ``received`` is NaN)
is read as the train mean, so it adds nothing to the logit.

A solution's score is its most suspicious step, ``s = max_k logit P_k(wrong)`` (the ``min``
aggregation of process reward models), and ``P(valid) = sigmoid(a * s + c)`` is fitted on
the calib solutions by Platt scaling. A ProcessBench threshold (the step probability at
which a step is flagged) is chosen on calib too (:func:`probes.stepmetrics.choose_threshold`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from ..metrics import auroc
from ..stepmetrics import choose_threshold
from .logistic import LogisticCalibrator
from .platt import PlattScaling


@dataclass
class StepArrays:
    """The steps of ``R`` records, in record order and step order.

    Attributes:
        X: ``(M, F)`` float64 step features (NaN where a feature is undefined).
        labels: ``(M,)`` 1 the first wrong step, 0 a correct step, -1 unknown.
        record: ``(M,)`` the step's record, ``0 .. R - 1``, non-decreasing.
        valid: ``(R,)`` the records' solution labels (1 valid).
        ids, groups: ``R`` record ids and groups.
        step: ``(M,)`` the step's index in its solution.
        spans: ``(M, 4)`` the step's characters and tokens (``probes.steps.StepSpan``).
    """

    X: np.ndarray
    labels: np.ndarray
    record: np.ndarray
    valid: np.ndarray
    ids: list[str]
    groups: list[str]
    step: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    spans: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    def per_record(self, values: np.ndarray) -> list[np.ndarray]:
        """``values (M,)`` cut into ``R`` arrays, one per record (steps in order)."""
        cuts = np.searchsorted(self.record, np.arange(1, len(self.ids)))
        return np.split(np.asarray(values), cuts)

    def wrong(self) -> list[int | None]:
        """Per record, the first wrong step's position among its steps here; ``None`` for a
        valid solution and for an invalid one whose first wrong step is not known (not
        annotated, or cut off by truncation): see :meth:`localised`."""
        out = []
        for labels in self.per_record(self.labels):
            hit = np.flatnonzero(labels == 1)
            out.append(int(hit[0]) if len(hit) else None)
        return out

    def localised(self) -> np.ndarray:
        """``(R,)`` bool: valid, or invalid with its first wrong step among its steps: the
        records that step localisation can be measured on."""
        wrong = self.wrong()
        return np.array(
            [v == 1 or w is not None for v, w in zip(self.valid, wrong, strict=True)], dtype=bool
        )

    def subset(self, rows: np.ndarray) -> StepArrays:
        """The records ``rows`` (in that order) and their steps."""
        rows = np.asarray(rows, dtype=np.int64)
        bounds = np.searchsorted(self.record, np.arange(len(self.ids) + 1))  # record is sorted
        parts = [np.arange(bounds[r], bounds[r + 1]) for r in rows]
        empty = np.zeros(0, dtype=np.int64)
        take = np.concatenate(parts) if parts else empty
        new_record = np.repeat(np.arange(len(rows)), [len(p) for p in parts]) if parts else empty
        return StepArrays(
            X=self.X[take],
            labels=self.labels[take],
            record=new_record,
            valid=self.valid[rows],
            ids=[self.ids[r] for r in rows],
            groups=[self.groups[r] for r in rows],
            step=self.step[take] if len(self.step) else self.step,
            spans=self.spans[take] if len(self.spans) else self.spans,
        )


class StepScorer(ClassifierMixin, BaseEstimator):
    """P(step wrong) and P(solution valid) (see the module docstring).

    Args:
        kind: ``logistic`` (every column of ``X``) or ``feature`` (``X`` has one column).
        weight_decay, max_epochs: of the logistic fit (:class:`LogisticCalibrator`).
        direction: a feature's sign (+1: higher is more suspect), or ``None`` to choose it
            on train.

    Learned: ``mean_``, ``std_``, ``weight_``, ``bias_``, ``temperature_`` (the one form),
    ``solution_coef_``, ``solution_intercept_`` (the solution-level Platt map of the
    aggregated logit), ``threshold_`` (ProcessBench's, a step probability), and for a
    logistic fit ``calibrator_``; for a feature, ``direction_``.
    """

    def __init__(
        self,
        kind: str = "logistic",
        weight_decay="auto",
        max_epochs: int = 50,
        direction: float | None = None,
    ):
        self.kind = kind
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.direction = direction

    def fit(self, train: StepArrays, calib: StepArrays, *, logger=False) -> StepScorer:
        """Fit on ``train``'s labelled steps; calibrate on ``calib`` (steps and solutions).
        ``logger``: a Lightning logger for the logistic fit's curves, or ``False``."""
        if self.kind not in ("logistic", "feature"):
            raise ValueError(f"StepScorer kind must be logistic or feature, got {self.kind!r}")
        known = train.labels >= 0
        X, y = train.X[known], train.labels[known]
        if len(np.unique(y)) < 2:
            raise ValueError("the train split needs wrong and correct steps to learn from")
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        mean = np.nanmean(X, axis=0)
        self.impute_ = np.where(np.isfinite(mean), mean, 0.0)
        ck = calib.labels >= 0
        Xc, yc = self._filled(calib.X[ck]), calib.labels[ck]
        if self.kind == "logistic":
            cal = LogisticCalibrator(self.weight_decay, self.max_epochs)
            cal.fit(self._filled(X), y, Xc, yc, logger=logger)
            self.calibrator_ = cal
            self.mean_, self.std_ = cal.mean_.astype(np.float64), cal.std_.astype(np.float64)
            self.weight_ = cal.coef_.astype(np.float64)
            self.bias_ = cal.intercept_ + cal.prior_shift_
            self.temperature_ = cal.temperature_
        else:
            if X.shape[1] != 1:
                raise ValueError(f"kind 'feature' reads one column, got {X.shape[1]}")
            x = self._filled(X)[:, 0]
            if self.direction is not None:
                self.direction_ = float(np.sign(self.direction))
            else:
                self.direction_ = 1.0 if auroc(x, y) >= 0.5 else -1.0
            # The sign (given, or chosen on train) is kept: calib only scales it.
            platt = PlattScaling(increasing=True).fit(self.direction_ * Xc[:, 0], yc)
            coef = platt.coef_ * self.direction_
            self.mean_ = self.impute_.copy()
            self.std_ = np.ones(1)
            self.weight_ = np.array([coef])
            self.bias_ = platt.intercept_ + coef * self.mean_[0]
            self.temperature_ = 1.0
        agg = self.solution_score(calib)
        platt = PlattScaling().fit(agg, calib.valid)
        self.solution_coef_, self.solution_intercept_ = platt.coef_, platt.intercept_
        known = calib.subset(np.flatnonzero(calib.localised()))
        self.threshold_ = choose_threshold(
            known.per_record(self.step_proba(known.X)), known.wrong()
        )
        return self

    def _filled(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return np.where(np.isnan(X), self.impute_, X)

    def step_logit(self, X: np.ndarray) -> np.ndarray:
        """``(M,)`` logits of P(step wrong)."""
        z = (self._filled(X) - self.mean_) / self.std_ @ self.weight_ + self.bias_
        return z / self.temperature_

    def step_proba(self, X: np.ndarray) -> np.ndarray:
        """``(M,)`` P(step wrong)."""
        return 1 / (1 + np.exp(-self.step_logit(X)))

    def solution_score(self, steps: StepArrays) -> np.ndarray:
        """``(R,)`` each record's most suspicious step logit (NaN for a record without
        steps)."""
        return aggregate(steps.per_record(self.step_logit(steps.X)))

    def predict_proba(self, steps: StepArrays) -> np.ndarray:
        """``(R, 2)``: P(invalid), P(valid) of each record."""
        s = self.solution_score(steps)
        p = 1 / (1 + np.exp(-(self.solution_coef_ * s + self.solution_intercept_)))
        return np.stack([1 - p, p], axis=1)

    def predict(self, steps: StepArrays) -> np.ndarray:
        """``(R,)`` 1 (valid) where no step reaches ``threshold_``, as ProcessBench decides."""
        flagged = [
            bool((p >= self.threshold_).any()) for p in steps.per_record(self.step_proba(steps.X))
        ]
        return np.array([0 if f else 1 for f in flagged], dtype=np.int64)


def aggregate(step_scores: Sequence[np.ndarray]) -> np.ndarray:
    """``(R,)`` the highest step score of each record; NaN without a (finite) one."""
    out = np.full(len(step_scores), np.nan)
    for i, s in enumerate(step_scores):
        s = np.asarray(s, dtype=np.float64)
        s = s[np.isfinite(s)]
        if len(s):
            out[i] = s.max()
    return out
