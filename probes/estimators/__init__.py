"""The estimators behind every scorer, as scikit-learn estimators (``BaseEstimator``:
``get_params``, ``set_params`` and ``clone`` work; hyper-parameters only in ``__init__``,
``fit`` returns ``self``, learned state ends in ``_``, ``predict_proba`` returns ``(N, 2)``).

A fitted estimator with the features it reads is exported as a :class:`probes.Scorer`
bundle (:mod:`probes.bundle`): "estimator" is what is fitted, "scorer" what is shipped.
"""

from .logistic import LogisticCalibrator
from .threshold import ThresholdBaseline

__all__ = ["LogisticCalibrator", "ThresholdBaseline"]
