"""Scorers with scikit-learn's conventions: hyper-parameters in ``__init__``, ``fit`` returns
``self``, learned state ends in ``_``, ``predict_proba`` returns ``(N, 2)``."""

from .logistic import LogisticCalibrator
from .threshold import ThresholdBaseline

__all__ = ["LogisticCalibrator", "ThresholdBaseline"]
