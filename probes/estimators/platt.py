"""Platt scaling with Platt's smoothed targets: one score -> P(valid).

``P = sigmoid(coef * s + intercept)`` fitted by maximum likelihood against the targets
``(N+ + 1) / (N+ + 2)`` for a positive and ``1 / (N- + 2)`` for a negative (Platt 1999; Lin,
Lin and Weng 2007), not 1 and 0. With 0/1 targets a calib set that one threshold separates
has no maximum: the slope runs off to infinity and every probability comes out 0 or 1
(``LogisticRegression(C=1e6)`` did exactly that). The smoothed targets keep the fit finite
and say how sure ``N`` records can make one.

Hand-written rather than ``CalibratedClassifierCV(method="sigmoid")``: that wraps an
estimator and refits through cross-validation; here one score is already there. The test
checks it against scikit-learn's own sigmoid fit.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit


class PlattScaling:
    """``fit(s (N,), y (N,))`` then ``predict_proba(s) -> (N,)`` P(valid).

    Args:
        increasing: keep the map increasing in ``s`` (its slope at least 1e-6 per standard
            deviation of ``s``): ``s`` is already signed so that higher means more likely
            positive, and the calib split must not flip that sign. The slope then stays
            tiny where calib disagrees, and the order of the scores is kept.
    """

    def __init__(self, increasing: bool = False):
        self.increasing = increasing

    def fit(self, s: np.ndarray, y: np.ndarray) -> PlattScaling:
        s, y = np.asarray(s, dtype=np.float64), np.asarray(y)
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        # Standardized for the optimizer; mapped back to the raw score below.
        mu, sd = float(s.mean()), float(s.std()) or 1.0
        z = (s - mu) / sd

        def loss(w):
            logit = w[0] * z + w[1]
            nll = -(t * log_expit(logit) + (1 - t) * log_expit(-logit)).sum()
            r = expit(logit) - t
            return nll, np.array([(r * z).sum(), r.sum()])

        prior = np.log((n_pos + 1) / (n_neg + 1))
        bounds = [(1e-6, None), (None, None)] if self.increasing else None
        start = np.array([1e-6 if self.increasing else 0.0, prior])
        w = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds).x
        self.coef_ = float(w[0] / sd)
        self.intercept_ = float(w[1] - w[0] * mu / sd)
        return self

    def decision_function(self, s: np.ndarray) -> np.ndarray:
        return self.coef_ * np.asarray(s, dtype=np.float64) + self.intercept_

    def predict_proba(self, s: np.ndarray) -> np.ndarray:
        return expit(self.decision_function(s))
