"""Scorers against scikit-learn, metrics against scikit-learn and a hand-written ECE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from probes.config import ScorerSpec
from probes.estimators import LogisticCalibrator, ThresholdBaseline
from probes.experiment import fit_scorer
from probes.featuredata import SplitArrays
from probes.metrics import grouped_bootstrap, point_metrics


def make_split(rng, n, w, noise=1.5):
    X = rng.normal(size=(n, len(w)))
    y = (X @ w + rng.normal(size=n) * noise > 0.3).astype(int)
    return X, y


@pytest.mark.parametrize("seed", [0, 1])
def test_logistic_calibrator_agrees_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=8)
    X, y = make_split(rng, 240, w)
    Xc, yc = make_split(rng, 80, w)
    Xt, yt = make_split(rng, 200, w)
    wd = 1e-2
    ours = LogisticCalibrator(
        weight_decay=wd, temperature=False, prior_correction=False, patience=50
    ).fit(X, y, Xc, yc)
    mu, sd = X.mean(0), X.std(0)
    ref = LogisticRegression(
        C=1 / (len(y) * wd), class_weight="balanced", tol=1e-10, max_iter=10_000
    )
    ref.fit((X - mu) / sd, y)
    p_ours = ours.predict_proba(Xt)[:, 1]
    p_ref = ref.predict_proba((Xt - mu) / sd)[:, 1]
    assert abs(roc_auc_score(yt, p_ours) - roc_auc_score(yt, p_ref)) < 0.01
    np.testing.assert_allclose(p_ours, p_ref, atol=2e-3)
    np.testing.assert_allclose(ours.coef_, ref.coef_[0], atol=2e-3)
    assert ours.predict_proba(Xt).shape == (200, 2)


def test_prior_correction_undoes_the_balanced_weights():
    """With 20% positives, balanced training says ~50%; the correction restores the base rate.

    Reference: an unweighted scikit-learn fit (no regularization to speak of), whose
    probabilities are calibrated in-sample by construction (mean p = base rate).
    """
    rng = np.random.default_rng(4)
    n = 4000
    x = rng.normal(size=(n, 1))
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * x[:, 0] - 2.0)))).astype(int)  # ~17% positive
    Xc, yc = x[:1000], y[:1000]
    kw = {"temperature": False, "weight_decay": 1e-6, "patience": 50}
    plain = LogisticCalibrator(prior_correction=False, **kw).fit(x, y, Xc, yc)
    fixed = LogisticCalibrator(**kw).fit(x, y, Xc, yc)
    shift = np.log(y.mean() / (1 - y.mean()))
    assert fixed.prior_shift_ == pytest.approx(shift) and plain.prior_shift_ == 0.0
    np.testing.assert_allclose(
        fixed.decision_function(x), plain.decision_function(x) + shift, atol=1e-4
    )
    assert plain.predict_proba(x)[:, 1].mean() > 2 * y.mean()  # pulled towards 1/2
    ref = LogisticRegression(C=1e6, tol=1e-10).fit(x, y)
    np.testing.assert_allclose(fixed.predict_proba(x)[:, 1], ref.predict_proba(x)[:, 1], atol=0.02)
    assert fixed.predict_proba(x)[:, 1].mean() == pytest.approx(y.mean(), abs=0.02)


def test_auto_weight_decay_keeps_the_lowest_calib_nll():
    """``weight_decay="auto"`` = fitting each strength alone and keeping sklearn's best log-loss."""
    from sklearn.metrics import log_loss

    from probes.estimators.logistic import WEIGHT_DECAY_GRID

    rng = np.random.default_rng(5)
    w = np.r_[rng.normal(size=5), np.zeros(35)]  # 5 informative of 40 features, few records
    X, y = make_split(rng, 80, w, noise=2.0)
    Xc, yc = make_split(rng, 120, w, noise=2.0)
    auto = LogisticCalibrator(weight_decay="auto").fit(X, y, Xc, yc)
    single = {wd: LogisticCalibrator(weight_decay=wd).fit(X, y, Xc, yc) for wd in WEIGHT_DECAY_GRID}
    losses = {wd: log_loss(yc, m.predict_proba(Xc)[:, 1]) for wd, m in single.items()}
    best = min(losses, key=losses.get)
    assert auto.weight_decay_ == best
    assert len(set(np.round(list(losses.values()), 3))) > 1  # the choice is not a tie
    for wd, loss in losses.items():
        assert auto.calib_nll_[wd] == pytest.approx(loss, abs=1e-5)
    np.testing.assert_allclose(auto.predict_proba(Xc), single[best].predict_proba(Xc), atol=1e-6)


def test_logged_refit_of_the_chosen_weight_decay_is_the_same_model(tmp_path):
    """With a logger, the chosen strength is refitted for its curves; it must not differ."""
    from lightning.pytorch.loggers import CSVLogger

    rng = np.random.default_rng(6)
    w = rng.normal(size=10)
    X, y = make_split(rng, 100, w)
    Xc, yc = make_split(rng, 60, w)
    plain = LogisticCalibrator(weight_decay=[0.01, 1.0]).fit(X, y, Xc, yc)
    logged = LogisticCalibrator(weight_decay=[0.01, 1.0]).fit(
        X, y, Xc, yc, logger=CSVLogger(tmp_path)
    )
    assert logged.weight_decay_ == plain.weight_decay_
    np.testing.assert_array_equal(logged.predict_proba(Xc), plain.predict_proba(Xc))
    assert list(tmp_path.rglob("metrics.csv"))  # the curves were written


def test_bad_weight_decay_is_named():
    from probes.config import ConfigError

    with pytest.raises(ConfigError, match="scorer 'lr': option 'weight_decay'.*'big'"):
        ScorerSpec("lr", "logistic", weight_decay="big")
    with pytest.raises(ValueError, match="option 'weight_decay'.*-1"):
        LogisticCalibrator(weight_decay=[0.1, -1]).fit(np.zeros((4, 1)), [0, 1, 0, 1], [[0]], [0])
    assert ScorerSpec("lr", "logistic", weight_decay=[0.1, "1e-2"]).weight_decay == (0.1, "1e-2")


def test_temperature_scaling_improves_calib_nll_of_an_overconfident_model():
    rng = np.random.default_rng(3)
    w = rng.normal(size=30)
    X, y = make_split(rng, 60, w, noise=6.0)  # few records, many features: overfits
    Xc, yc = make_split(rng, 200, w, noise=6.0)
    raw = LogisticCalibrator(weight_decay=1e-5, temperature=False).fit(X, y, Xc, yc)
    cal = LogisticCalibrator(weight_decay=1e-5, temperature=True).fit(X, y, Xc, yc)
    assert cal.temperature_ > 1  # softened

    def nll(model):
        p = np.clip(model.predict_proba(Xc)[:, 1], 1e-9, 1 - 1e-9)
        return -np.mean(yc * np.log(p) + (1 - yc) * np.log(1 - p))

    assert nll(cal) < nll(raw)


def test_threshold_baseline_by_hand():
    X = np.array([[0.1, 5.0], [0.4, 4.0], [0.35, 1.0], [0.8, 0.0]])
    y = np.array([0, 0, 1, 1])
    tb = ThresholdBaseline().fit(X, y, ["a", "b"])
    # b separates perfectly in the negative direction (AUROC 0 -> direction -1).
    assert tb.feature_ == "b" and tb.direction_ == -1
    assert tb.predict(X).tolist() == [0, 0, 1, 1]
    p = tb.predict_proba(X)
    assert p.shape == (4, 2) and (np.diff(p[:, 1]) >= 0).all()
    named = ThresholdBaseline(feature="a").fit(X, y, ["a", "b"])
    # Youden on a: thresholds 0.8 (tpr .5, fpr 0) and 0.35 (tpr 1, fpr .5) tie at J = .5;
    # the first maximum, 0.8, is kept.
    assert named.direction_ == 1 and named.threshold_ == pytest.approx(0.8)
    free = ThresholdBaseline(feature="a", label_free=True, quantile=0.5).fit(X, None, ["a", "b"])
    assert free.threshold_ == pytest.approx(np.median(X[:, 0]))


def test_threshold_learns_from_calib_labels_only():
    """Training-free: permuting the train labels changes nothing, permuting calib's does.
    (Test labels never reach fit_scorer at all: it is not given the test split.)"""
    rng = np.random.default_rng(0)
    names = [f"f{i}/L00" for i in range(5)]
    w = np.array([0, 0, 2.0, 0, 0])

    def split(n):
        X, y = make_split(rng, n, w)
        return SplitArrays(torch.from_numpy(X), torch.from_numpy(y), [str(i) for i in range(n)], [])

    def permuted(a: SplitArrays) -> SplitArrays:
        order = torch.from_numpy(np.random.default_rng(1).permutation(len(a.y)))
        return SplitArrays(a.X, a.y[order], a.groups, a.ids)

    train, calib, test = split(50), split(60), split(60)
    spec = ScorerSpec("t", "threshold", select=("*",))
    a = fit_scorer(spec, names, train, calib)
    b = fit_scorer(spec, names, permuted(train), calib)
    assert (b.model.feature_, b.model.threshold_) == (a.model.feature_, a.model.threshold_)
    np.testing.assert_array_equal(b.predict_proba(test.X.numpy()), a.predict_proba(test.X.numpy()))
    c = fit_scorer(spec, names, train, permuted(calib))
    assert (c.model.feature_, c.model.threshold_) != (a.model.feature_, a.model.threshold_)


def hand_ece(p, y, n_bins=15):
    """Binary ECE as torchmetrics defines it (and as the reliability diagram shows it):
    bins of P(valid); in each, |observed valid rate - mean P(valid)|, weighted by its share."""
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(y[inside].mean() - p[inside].mean())
    return total


def test_metrics_agree_with_sklearn_and_a_hand_written_ece():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(scale=0.25, size=500), 0.001, 0.999)
    m = point_metrics(p, y, (p >= 0.5).astype(int))
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert m["auprc"] == pytest.approx(average_precision_score(y, p), abs=1e-6)
    assert m["ece"] == pytest.approx(hand_ece(p, y), abs=1e-6)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["accuracy"] == pytest.approx(np.mean((p >= 0.5) == y))


def test_grouped_bootstrap_resamples_whole_groups():
    rng = np.random.default_rng(1)
    y = np.tile([0, 1], 50)
    p = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(scale=0.3, size=100), 0, 1)
    groups = np.repeat([str(i) for i in range(50)], 2)
    ci = grouped_bootstrap(p, y, (p > 0.5).astype(int), groups, n_boot=200)
    point = roc_auc_score(y, p)
    assert ci["auroc"][0] < point < ci["auroc"][1]
    assert 0.05 < ci["auroc"][1] - ci["auroc"][0] < 0.4


def test_platt_uses_smoothed_targets_and_matches_scikit_learn():
    """A calib set that one threshold separates: 0/1 targets (LogisticRegression with a huge
    C, the old map) give probabilities of 0 and 1; Platt's smoothed targets stay finite and
    agree with scikit-learn's own sigmoid calibration, which uses them."""
    from sklearn.calibration import _sigmoid_calibration
    from sklearn.linear_model import LogisticRegression

    from probes.estimators.platt import PlattScaling

    rng = np.random.default_rng(0)
    s = np.concatenate([rng.normal(-2, 0.5, 20), rng.normal(2, 0.5, 12)])
    y = np.array([0] * 20 + [1] * 12)
    hard = LogisticRegression(C=1e6, max_iter=10_000).fit(s.reshape(-1, 1), y)
    p_hard = hard.predict_proba(s.reshape(-1, 1))[:, 1]
    assert p_hard.min() < 1e-6 and p_hard.max() > 1 - 1e-6  # what the old map did
    platt = PlattScaling().fit(s, y)
    p = platt.predict_proba(s)
    assert p.max() < 0.99 and p.min() > 0.005  # 32 records cannot make anyone that sure
    a, b = _sigmoid_calibration(s, y)  # sklearn: P = 1 / (1 + exp(a * s + b))
    np.testing.assert_allclose([platt.coef_, platt.intercept_], [-a, -b], rtol=1e-4, atol=1e-5)
    tb = ThresholdBaseline(feature="a").fit(s.reshape(-1, 1), y, ["a"])
    np.testing.assert_allclose(tb.predict_proba(s.reshape(-1, 1))[:, 1], p, rtol=1e-12)


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticCalibrator(weight_decay=0.1, max_epochs=7, temperature=False),
        ThresholdBaseline(feature="b", quantile=0.3),
    ],
)
def test_estimators_are_scikit_learn_estimators(estimator):
    """get_params / set_params / clone, and no logger among the hyper-parameters."""
    from sklearn.base import clone, is_classifier

    params = estimator.get_params()
    assert "logger" not in params
    twin = clone(estimator)
    assert twin is not estimator and twin.get_params() == params
    assert is_classifier(twin)
    key = next(iter(params))
    assert twin.set_params(**{key: params[key]}) is twin
    rng = np.random.default_rng(3)
    X, y = make_split(rng, 60, np.array([1.0, -2.0]))
    if isinstance(twin, ThresholdBaseline):
        twin.fit(X, y, ["a", "b"])
    else:
        twin.fit(X, y, X, y)
    assert twin.classes_.tolist() == [0, 1]
    assert twin.predict_proba(X).shape == (60, 2)
    assert 0 <= twin.score(X, y) <= 1  # ClassifierMixin: accuracy


def test_an_increasing_platt_map_keeps_the_sign_its_scores_were_given():
    from probes.estimators.platt import PlattScaling

    rng = np.random.default_rng(0)
    s = rng.normal(size=200)
    y = (s + rng.normal(scale=0.5, size=200) < 0).astype(int)  # calib says: lower is positive
    free = PlattScaling().fit(s, y)
    kept = PlattScaling(increasing=True).fit(s, y)
    assert free.coef_ < 0 < kept.coef_ and kept.coef_ < 1e-5
    p = kept.predict_proba(np.array([-1.0, 0.0, 1.0]))
    assert p[0] < p[1] < p[2]  # the order of the scores is kept
    agree = PlattScaling(increasing=True).fit(-s, y)  # where calib agrees, no constraint bites
    assert agree.coef_ == pytest.approx(PlattScaling().fit(-s, y).coef_, rel=1e-4)
