"""Step-level metrics against hand-worked examples and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score

from probes.stepmetrics import (
    choose_threshold,
    first_flagged,
    processbench_f1,
    step_auroc,
    top_k_accuracy,
)

# Three solutions: wrong at step 2, valid, wrong at step 0.
SCORES = [[0.1, 0.3, 0.8, 0.9], [0.2, 0.1, 0.4], [0.7, 0.2]]
WRONG = [2, None, 0]


def test_step_auroc_pools_first_wrong_steps_against_the_steps_before_them():
    # Positives 0.8 (sol 0) and 0.7 (sol 2); negatives 0.1, 0.3 (before step 2 of sol 0).
    # Steps after the error (0.9) and the valid solution's are left out.
    assert step_auroc(SCORES, WRONG) == 1.0
    rng = np.random.default_rng(0)
    scores, wrong, pos, neg = [], [], [], []
    for _ in range(50):
        n = int(rng.integers(2, 8))
        s = rng.uniform(size=n).tolist()
        w = int(rng.integers(0, n)) if rng.uniform() < 0.7 else None
        scores.append(s)
        wrong.append(w)
        if w is not None:
            pos.append(s[w])
            neg += s[:w]
    want = roc_auc_score([1] * len(pos) + [0] * len(neg), pos + neg)
    assert math.isclose(step_auroc(scores, wrong), want, rel_tol=1e-12)
    assert math.isnan(step_auroc([[0.5]], [0]))  # no correct step before any error


def test_top_k_accuracy():
    # sol 0: ranks 3 (0.9), 2 (0.8): top-1 misses, top-2 hits; sol 2: top-1 hits.
    assert top_k_accuracy(SCORES, WRONG, 1) == 0.5
    assert top_k_accuracy(SCORES, WRONG, 2) == 1.0
    assert top_k_accuracy([[0.5, 0.5]], [1], 1) == 0.0  # a tie goes to the earlier step


def test_processbench_f1_by_hand():
    assert first_flagged([0.1, 0.6, 0.9], 0.5) == 1 and first_flagged([0.1], 0.5) is None
    # At 0.75: sol 0 flags step 2 (right), sol 1 nothing (right), sol 2 nothing (wrong).
    got = processbench_f1(SCORES, WRONG, 0.75)
    assert got == {"f1": 2 * 0.5 * 1.0 / 1.5, "acc_invalid": 0.5, "acc_valid": 1.0}
    # At 0.5: sol 0 step 2, sol 1 nothing, sol 2 step 0: all right.
    assert processbench_f1(SCORES, WRONG, 0.5)["f1"] == 1.0
    # Flagging nothing: every invalid one missed.
    assert processbench_f1(SCORES, WRONG, np.inf)["f1"] == 0.0


def test_threshold_is_the_best_f1_on_calib():
    t = choose_threshold(SCORES, WRONG)
    assert processbench_f1(SCORES, WRONG, t)["f1"] == 1.0
    rng = np.random.default_rng(1)
    scores = [rng.uniform(size=int(rng.integers(2, 6))).tolist() for _ in range(30)]
    wrong = [int(rng.integers(0, len(s))) if i % 2 else None for i, s in enumerate(scores)]
    t = choose_threshold(scores, wrong)
    grid = np.linspace(0, 1.01, 400)
    best = max(processbench_f1(scores, wrong, g)["f1"] for g in grid)
    assert processbench_f1(scores, wrong, t)["f1"] >= best - 1e-12
