"""``ThresholdBaseline``: one feature, a threshold, no training.

Everything it learns comes from the calib split: which feature (``auto``), its direction,
the threshold (Youden's J) and the probability map (Platt scaling, with Platt's smoothed
targets: :mod:`probes.estimators.platt`). It never sees test data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import roc_curve

from ..metrics import auroc
from .platt import PlattScaling


class ThresholdBaseline(ClassifierMixin, BaseEstimator):
    """A training-free detector on one feature.

    Args:
        feature: a feature name, or ``auto`` for the feature with the best calib AUROC
            (either direction).
        label_free: put the threshold at ``quantile`` of the calib scores without reading
            labels; probabilities are then the calib empirical CDF of the score (a rank, not
            a calibrated probability).
        quantile: the label-free threshold's quantile.
        direction: ``+1`` (higher = valid) or ``-1``; learned on calib when ``None`` (with
            labels), ``+1`` when label-free.

    ``predict_proba`` returns ``(N, 2)``: P(invalid), P(valid).
    """

    def __init__(
        self,
        feature: str = "auto",
        label_free: bool = False,
        quantile: float = 0.5,
        direction: int | None = None,
    ):
        self.feature = feature
        self.label_free = label_free
        self.quantile = quantile
        self.direction = direction

    def fit(
        self,
        X_calib: np.ndarray,
        y_calib: np.ndarray | None,
        names: Sequence[str] | None = None,
    ):
        """Learn from the calib split only. ``X_calib (N, F)``, ``y_calib (N,)``; ``names``:
        the ``F`` feature names (default ``x0``, ``x1``...), for ``feature``."""
        X = np.asarray(X_calib, dtype=np.float64)
        names = [f"x{j}" for j in range(X.shape[1])] if names is None else list(names)
        self.classes_ = np.array([0, 1])
        if not self.label_free and y_calib is None:
            raise ValueError("ThresholdBaseline needs calib labels unless label_free=True")
        if self.feature == "auto":
            if self.label_free:
                raise ValueError("feature='auto' picks by calib AUROC, which needs labels")
            aucs = np.array([auroc(X[:, j], y_calib) for j in range(X.shape[1])])
            j = int(np.nanargmax(np.abs(aucs - 0.5)))
        elif self.feature in names:
            j = names.index(self.feature)
        else:
            raise ValueError(
                f"option 'feature': {self.feature!r} is not among the {len(names)} features"
            )
        self.feature_ = names[j]
        self.feature_index_ = j
        x = X[:, j]
        if self.direction is not None:
            self.direction_ = int(self.direction)
        elif self.label_free:
            self.direction_ = 1
        else:
            self.direction_ = 1 if auroc(x, y_calib) >= 0.5 else -1
        s = self.direction_ * x
        if self.label_free:
            self.threshold_ = float(np.quantile(s, self.quantile))
            self.calib_scores_ = np.sort(s)
            self.platt_ = None
        else:
            fpr, tpr, thresholds = roc_curve(y_calib, s)
            finite = np.isfinite(thresholds)
            best = int(np.argmax((tpr - fpr)[finite]))
            self.threshold_ = float(thresholds[finite][best])
            self.platt_ = PlattScaling().fit(s, y_calib)
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """``(N,)`` the signed feature ``direction * x``; higher means more likely valid."""
        return self.direction_ * np.asarray(X, dtype=np.float64)[:, self.feature_index_]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        s = self.decision_function(X)
        if self.platt_ is not None:
            p = self.platt_.predict_proba(s)
        else:
            p = np.searchsorted(self.calib_scores_, s, side="right") / len(self.calib_scores_)
        return np.stack([1 - p, p], axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``(N,)`` 1 (valid) where the signed feature reaches the threshold."""
        return (self.decision_function(X) >= self.threshold_).astype(np.int64)
