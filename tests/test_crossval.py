"""Grouped cross-validation: folds of whole groups, nothing read across a fold's wall (a
leak is shown to change the result), pooled and per-fold metrics against independent
computations, and the refit on all records."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from probes import crossval
from probes.config import ScorerSpec
from probes.errors import DataError
from probes.estimators import LogisticCalibrator
from probes.featuredata import SplitArrays
from probes.metrics import auroc, evaluate_scores

LR = ScorerSpec("lr", "logistic", select=("*",), weight_decay=1e-3)
THRESHOLD = ScorerSpec("thr", "threshold", select=("*",))


def twins(n_groups=60, size=4, n_features=40, seed=0):
    """Pure noise with twins: each group's records share one random label and (up to 5%
    noise) one random feature vector. Nothing generalizes across groups, so an honest
    out-of-fold AUROC is near 0.5; a model that sees a twin of a test record can look it up."""
    rng = np.random.default_rng(seed)
    half = n_groups // 2
    yg = rng.permutation(np.r_[np.ones(half), np.zeros(n_groups - half)]).astype(int)
    X = np.repeat(rng.normal(size=(n_groups, n_features)), size, axis=0)
    X += 0.05 * rng.normal(size=X.shape)
    n = n_groups * size
    data = SplitArrays(
        X=torch.tensor(X),
        y=torch.tensor(np.repeat(yg, size)),
        groups=[f"g{i // size}" for i in range(n)],
        ids=[f"r{i}" for i in range(n)],
    )
    return data, [f"eig_low/L{j:02d}" for j in range(n_features)]


def oof_auroc(cv):
    y = cv.data.y.numpy()
    return {name: auroc(p, y) for name, p in cv.probs.items()}


def test_folds_hold_whole_groups_are_stratified_and_test_every_record_once():
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 6, 120)
    groups = [f"g{g}" for g, s in enumerate(sizes) for _ in range(s)]
    labels = [int(rng.random() < 0.25) for _ in groups]
    folds = crossval.plan_folds(labels, groups, 5, (0.6, 0.2, 0.2), seed=3)
    crossval.check_folds(folds, groups)  # also checked below, independently
    tested = np.sort(np.concatenate([f.test for f in folds]))
    assert tested.tolist() == list(range(len(groups)))
    g, y = np.asarray(groups), np.asarray(labels)
    share = y.mean()
    for f in folds:
        parts = [set(g[f.train]), set(g[f.calib]), set(g[f.test])]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert abs(y[f.test].mean() - share) < 0.06  # stratified (whole groups allow ~this)
        assert len(f.calib) / (len(f.train) + len(f.calib)) == pytest.approx(0.25, abs=0.04)
    again = crossval.plan_folds(labels, groups, 5, (0.6, 0.2, 0.2), seed=3)
    for a, b in zip(folds, again, strict=True):
        assert (a.test == b.test).all() and (a.calib == b.calib).all()


def test_a_leak_across_the_fold_wall_is_detected_and_changes_the_result(monkeypatch):
    data, names = twins()
    y, groups = data.y.tolist(), data.groups
    honest = crossval.cross_validate(
        [LR, THRESHOLD], names, data, crossval.plan_folds(y, groups, 5), progress=False
    )
    for value in oof_auroc(honest).values():
        assert 0.35 < value < 0.65  # noise, measured honestly

    # Leak 1: folds that ignore groups put twins of test records in training.
    by_record = crossval.plan_folds(y, data.ids, 5)
    with pytest.raises(ValueError, match="is in both"):
        crossval.cross_validate([LR], names, data, by_record, progress=False)
    # Leak 2: a selection that reads the test fold's labels (calib := test).
    peek = [crossval.Fold(f.train, f.test, f.test) for f in crossval.plan_folds(y, groups, 5)]
    with pytest.raises(ValueError, match="overlap"):
        crossval.cross_validate([THRESHOLD], names, data, peek, progress=False)

    # With the guard switched off, both leaks change the result: the test can see them.
    monkeypatch.setattr(crossval, "check_folds", lambda folds, groups: None)
    leaked = crossval.cross_validate([LR], names, data, by_record, progress=False)
    assert oof_auroc(leaked)["lr"] > 0.9
    peeked = crossval.cross_validate([THRESHOLD], names, data, peek, progress=False)
    assert oof_auroc(peeked)["thr"] > 0.8


def test_pooled_and_per_fold_metrics_match_an_independent_computation():
    data, names = twins(n_groups=40, size=2, n_features=3, seed=4)
    # A real signal in feature 0, so the AUROCs are not all 0.5.
    data.X[:, 0] += 1.5 * data.y
    folds = crossval.plan_folds(data.y.tolist(), data.groups, 4)
    cv = crossval.cross_validate([LR, THRESHOLD], names, data, folds, progress=False)
    pooled = crossval.pooled_metrics(cv, n_boot=50, seed=0)
    y = data.y.numpy()
    for name in ("lr", "thr"):
        assert not np.isnan(cv.probs[name]).any()  # one prediction per record
        ref = evaluate_scores(cv.probs[name], y, cv.decisions[name], data.groups, 50, 0)
        assert pooled[name]["auroc"] == pytest.approx(roc_auc_score(y, cv.probs[name]))
        assert pooled[name]["auroc_lo"] == ref["auroc_lo"]
        per_fold = [roc_auc_score(y[f.test], cv.probs[name][f.test]) for f in folds]
        assert pooled[name]["auroc_fold_mean"] == pytest.approx(np.mean(per_fold))
        assert pooled[name]["auroc_fold_sd"] == pytest.approx(np.std(per_fold, ddof=1))
        assert pooled[name]["folds"] == 4
    assert pooled["lr"]["auroc"] > 0.75
    from probes.experiment import fold_table

    lr = pooled["lr"]
    assert f"{lr['ece_fold_mean']:.3f} +- {lr['ece_fold_sd']:.3f}" in fold_table(pooled)
    rows = [r for r in cv.fold_rows if r["scorer"] == "thr"]
    assert pooled["thr"]["feature"] == Counter(r["feature"] for r in rows).most_common(1)[0][0]


def test_refit_uses_the_folds_choices_and_the_out_of_fold_temperature():
    data, names = twins(n_groups=40, size=2, n_features=3, seed=5)
    data.X[:, 1] -= 1.0 * data.y
    folds = crossval.plan_folds(data.y.tolist(), data.groups, 4)
    spec = ScorerSpec("lr", "logistic", select=("*",), weight_decay=(1e-2, 1.0))
    cv = crossval.cross_validate([spec, THRESHOLD], names, data, folds, progress=False)
    fitted = crossval.refit(spec, names, cv)
    rows = [r for r in cv.fold_rows if r["scorer"] == "lr"]
    wd = Counter(r["weight_decay"] for r in rows).most_common(1)[0][0]
    X, y = data.X.numpy(), data.y.numpy()
    direct = LogisticCalibrator(
        weight_decay=wd, temperature=False, max_epochs=round(np.median([r["epochs"] for r in rows]))
    ).fit(X[:, fitted.columns], y)
    np.testing.assert_allclose(fitted.model.coef_, direct.coef_, atol=1e-6)
    # The temperature minimizes the NLL of the pooled out-of-fold logits.
    z = cv.logits["lr"]
    grid = np.exp(np.linspace(-3, 3, 6001))
    nll = [np.mean(np.logaddexp(0, -(2 * y - 1) * z / t)) for t in grid]
    assert fitted.model.temperature_ == pytest.approx(grid[int(np.argmin(nll))], rel=2e-3)
    thr = crossval.refit(THRESHOLD, names, cv)
    assert thr.model.feature_ == "eig_low/L01" and thr.model.direction_ == -1


def test_auto_folds_follow_the_size_of_the_smaller_class():
    assert crossval.choose_k("auto", [1] * 96 + [0] * 444) == 10  # CHAMP
    assert crossval.choose_k("auto", [1] * 200 + [0] * 200) == 5  # gsm-perturb
    assert crossval.choose_k("auto", [1] * 20 + [0] * 60) == 4  # >= 5 per test fold
    assert crossval.choose_k("auto", [1] * 9 + [0] * 60) == 0  # the single split
    assert crossval.choose_k(3, [1] * 9 + [0] * 60) == 3


def test_a_fold_with_one_class_names_the_fold_and_the_way_out():
    labels = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    groups = [f"g{i}" for i in range(10)]
    folds = crossval.plan_folds(labels, groups, 5)
    with pytest.raises(
        DataError, match=r"eval.cv 5, fold \d's (train|calib|test) part.*eval.cv: 0"
    ):
        crossval.check_classes(folds, labels, "data.jsonl")
