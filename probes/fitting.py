"""Fit one scorer of an experiment on its features: the one fitting path of the single split,
of every cross-validation fold and of the refit on all records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import ScorerSpec
from .estimators import LogisticCalibrator, ThresholdBaseline
from .featuredata import SplitArrays, select_features


@dataclass
class FittedScorer:
    """A fitted scorer with the features it reads (names in store order)."""

    spec: ScorerSpec
    model: Any
    names: list[str]
    columns: list[int] = field(repr=False)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``X (N, F_store)`` -> ``(N, 2)``: P(invalid), P(valid)."""
        return self.model.predict_proba(X[:, self.columns])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``X (N, F_store)`` -> ``(N,)`` 0/1 at the scorer's threshold."""
        return self.model.predict(X[:, self.columns])

    def describe(self) -> dict[str, Any]:
        """What was chosen from labels: the threshold feature, or the logistic's strength,
        temperature, prior shift and epochs."""
        m = self.model
        if isinstance(m, ThresholdBaseline):
            return {"threshold": m.threshold_, "feature": m.feature_, "n_features": 1}
        return {
            "threshold": 0.5,
            "temperature": m.temperature_,
            "prior_shift": m.prior_shift_,
            "weight_decay": m.weight_decay_,
            "epochs": m.epochs_,
            "n_features": len(self.names),
        }


def fit_scorer(
    spec: ScorerSpec, names: list[str], train: SplitArrays, calib: SplitArrays, logger=False
) -> FittedScorer:
    """Fit one scorer on its selected features: a logistic one trains on ``train`` and reads
    ``calib`` for early stopping, weight decay and temperature; a threshold reads ``calib``
    only (its feature, direction, threshold and Platt map)."""
    cols = select_features(names, spec.select)
    chosen = [names[j] for j in cols]
    Xtr, Xc = train.X.numpy()[:, cols], calib.X.numpy()[:, cols]
    if spec.kind == "threshold":
        model = ThresholdBaseline(feature=spec.feature, label_free=spec.label_free)
        model.fit(Xc, None if spec.label_free else calib.y.numpy(), chosen)
    else:
        model = LogisticCalibrator(
            weight_decay=spec.weight_decay,
            temperature=spec.temperature,
            prior_correction=spec.prior_correction,
            max_epochs=spec.max_epochs,
        ).fit(Xtr, train.y.numpy(), Xc, calib.y.numpy(), logger=logger)
    return FittedScorer(spec, model, chosen, cols)
