"""The step scorer and the step evaluation on synthetic steps: what it learns from, how it
fills gaps, how it aggregates, that the test split never reaches a fit, and the metrics
against hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from probes.estimators.step import StepArrays, StepScorer, aggregate
from probes.stepeval import (
    BASELINES,
    STEP_SCORERS,
    StepPredictions,
    evaluate_steps,
    step_metrics,
)
from probes.stepmetrics import choose_threshold


def synthetic(n: int, seed: int, signal: float = 3.0, n_features: int = 3):
    """``n`` solutions of 3-7 steps, half valid; an invalid one's first wrong step (random)
    has feature 0 raised by ``signal``; steps after it are unknown (-1)."""
    rng = np.random.default_rng(seed)
    X, labels, record, valid = [], [], [], []
    for r in range(n):
        S = int(rng.integers(3, 8))
        ok = r % 2 == 0
        w = None if ok else int(rng.integers(0, S))
        x = rng.normal(size=(S, n_features))
        lab = np.zeros(S, dtype=np.int64)
        if w is not None:
            x[w, 0] += signal
            lab[w], lab[w + 1 :] = 1, -1
        X.append(x)
        labels.append(lab)
        record += [r] * S
        valid.append(int(ok))
    step = np.concatenate([np.arange(len(lab)) for lab in labels])
    return StepArrays(
        X=np.concatenate(X),
        labels=np.concatenate(labels),
        record=np.array(record),
        valid=np.array(valid),
        ids=[f"r{r}" for r in range(n)],
        groups=[f"g{r // 2}" for r in range(n)],
        step=step,
        spans=np.zeros((len(step), 4), dtype=np.int64),
    )


def test_logistic_step_scorer_fits_the_labelled_steps_only():
    train, calib = synthetic(120, 0), synthetic(60, 1)
    scorer = StepScorer(weight_decay=0.01).fit(train, calib)
    known = train.labels >= 0
    X, y = train.X[known], train.labels[known]
    z = (X - X.mean(0)) / X.std(0)
    ref = LogisticRegression(class_weight="balanced", C=1 / (len(y) * 0.01)).fit(z, y)
    np.testing.assert_allclose(scorer.weight_, ref.coef_[0], rtol=2e-3, atol=2e-3)
    # The steps after the first error (unknown) never reach the fit.
    moved = synthetic(120, 0)
    moved.X[moved.labels == -1] += 100.0
    again = StepScorer(weight_decay=0.01).fit(moved, calib)
    np.testing.assert_allclose(again.weight_, scorer.weight_, rtol=1e-6)


def test_missing_features_read_as_the_train_mean_and_add_nothing():
    train, calib = synthetic(80, 0), synthetic(40, 1)
    scorer = StepScorer(weight_decay=0.1).fit(train, calib)
    x = calib.X[:3].copy()
    filled = x.copy()
    x[:, 1] = np.nan
    filled[:, 1] = scorer.impute_[1]
    np.testing.assert_allclose(scorer.step_logit(x), scorer.step_logit(filled))
    assert scorer.impute_[1] == pytest.approx(np.nanmean(train.X[train.labels >= 0, 1]))


def test_solution_score_is_the_most_suspect_step_and_threshold_comes_from_calib():
    train, calib = synthetic(80, 0), synthetic(40, 1)
    scorer = StepScorer(weight_decay=0.1).fit(train, calib)
    logits = calib.per_record(scorer.step_logit(calib.X))
    np.testing.assert_allclose(scorer.solution_score(calib), [z.max() for z in logits])
    a, c = scorer.solution_coef_, scorer.solution_intercept_
    assert a < 0  # a more suspect step means a less likely valid solution
    p = 1 / (1 + np.exp(-(a * np.array([z.max() for z in logits]) + c)))
    np.testing.assert_allclose(scorer.predict_proba(calib)[:, 1], p)
    probs = calib.per_record(scorer.step_proba(calib.X))
    assert scorer.threshold_ == choose_threshold(probs, calib.wrong())
    assert aggregate([np.array([np.nan, 1.0, 3.0]), np.array([np.nan])]).tolist()[0] == 3.0


def test_feature_kind_chooses_its_sign_on_train():
    train, calib = synthetic(80, 0), synthetic(40, 1)
    up = StepScorer("feature").fit(_column(train, 0), _column(calib, 0))
    flipped_train, flipped_calib = _column(train, 0), _column(calib, 0)
    flipped_train.X, flipped_calib.X = -flipped_train.X, -flipped_calib.X
    down = StepScorer("feature").fit(flipped_train, flipped_calib)
    assert (up.direction_, down.direction_) == (1.0, -1.0)
    np.testing.assert_allclose(up.step_proba(calib.X[:, :1]), down.step_proba(-calib.X[:, :1]))


def _column(a: StepArrays, j: int) -> StepArrays:
    b = a.subset(np.arange(len(a)))
    b.X = b.X[:, j : j + 1].copy()
    return b


def test_step_metrics_match_a_hand_worked_example():
    # r0 invalid, wrong step 1; r1 valid; r2 invalid, wrong step 0.
    arrays = StepArrays(
        X=np.zeros((7, 1)),
        labels=np.array([0, 1, -1, 0, 0, 1, -1]),
        record=np.array([0, 0, 0, 1, 1, 2, 2]),
        valid=np.array([0, 1, 0]),
        ids=["r0", "r1", "r2"],
        groups=["a", "b", "c"],
    )
    p = np.array([0.2, 0.9, 0.1, 0.3, 0.95, 0.4, 0.8])
    pred = StepPredictions(p, np.array([0.1, 0.6, 0.3]), [1, 1, None])
    m = step_metrics(arrays, pred)
    assert m["step_auroc"] == 1.0  # 0.9 and 0.4 against 0.2 (the only step before a wrong one)
    # against 0.2, 0.3 and 0.95: 0.9 beats 2 of 3, 0.4 beats 2 of 3
    assert m["step_auroc_all"] == pytest.approx(4 / 6)
    assert m["top1"] == 0.5 and m["top3"] == 1.0  # r2's top step is 1 (0.8), not 0
    assert m["pb_acc_invalid"] == 0.5 and m["pb_acc_valid"] == 0.0 and m["pb_f1"] == 0.0
    assert m["solution_auroc"] == 1.0


def test_the_test_split_never_reaches_a_fit():
    arrays = synthetic(150, 0, n_features=3)
    names = ["step/a/L00", "step/b/L00", "step_confound/logprob"]
    X = np.concatenate([arrays.X, np.zeros((len(arrays.X), 2))], axis=1)  # position, random
    X[:, 3] = arrays.step / 7.0
    X[:, 4] = np.random.default_rng(0).random(len(X))
    arrays.X = X
    names += ["step_confound/position", "step_baseline/random"]
    splits = np.array(["train", "calib", "test"] * 50)
    specs = [s for s in STEP_SCORERS if s.name in ("step_spectral", "step_logprob", "random")]
    specs += [s for s in STEP_SCORERS if s.name in ("last_step",)]
    a = evaluate_steps(arrays, names, splits, cv=0, n_boot=20, specs=specs)
    scrambled = arrays.subset(np.arange(len(arrays)))
    test_steps = np.isin(scrambled.record, np.flatnonzero(splits == "test"))
    scrambled.X[test_steps] = np.random.default_rng(1).normal(size=scrambled.X[test_steps].shape)
    scrambled.labels[test_steps] = 0
    b = evaluate_steps(scrambled, names, splits, cv=0, n_boot=20, specs=specs)
    for name in a["fitted"]:
        np.testing.assert_array_equal(a["fitted"][name].weight_, b["fitted"][name].weight_)
        assert a["fitted"][name].threshold_ == b["fitted"][name].threshold_
    # The planted signal is found; noise is not.
    spectral, random = a["scorers"]["step_spectral"], a["scorers"]["random"]
    assert spectral["top1"] > 0.8 and spectral["step_auroc"] > 0.9
    assert abs(random["step_auroc"] - 0.5) < 0.15
    assert a["paired"]["top1"]["baseline"] in BASELINES and a["paired"]["top1"]["diff"] > 0


def test_cross_validation_predicts_every_record_once():
    arrays = synthetic(100, 0, n_features=3)
    X = np.concatenate([arrays.X, arrays.step[:, None] / 7.0, np.zeros((len(arrays.X), 1))], 1)
    arrays.X = X
    names = ["step/a/L00", "step/b/L00", "step_confound/logprob", "step_confound/position"]
    names.append("step_baseline/random")
    splits = np.array(["train", "calib", "test"] * 33 + ["train"])
    specs = [s for s in STEP_SCORERS if s.name in ("step_spectral", "last_step")]
    out = evaluate_steps(arrays, names, splits, cv=5, n_boot=20, specs=specs)
    rows = out["predictions"]
    assert len(rows) == len(arrays.labels)
    assert sorted({r["id"] for r in rows}) == sorted(arrays.ids)
    assert {r["fold"] for r in rows} == set(range(5))
    assert "5-fold" in out["evaluation"]


def test_step_bundle_round_trip_keeps_every_step_score(tmp_path):
    from probes.bundle import BundleError, Scorer, from_step_scorer
    from probes.config import CaptureConfig
    from probes.models import load_frozen

    train, calib = synthetic(80, 0), synthetic(40, 1)
    scorer = StepScorer(weight_decay=0.1).fit(train, calib)
    names = ["step/received/L00", "step/diagonal/L00", "step_confound/logprob"]
    capture = CaptureConfig(steps="lines", layers=(0,)).to_dict()
    identity = load_frozen("tiny-llama").identity
    bundle = from_step_scorer(scorer, "s", names, identity, capture)
    loaded = Scorer.load(bundle.save(tmp_path / "s"))
    X = calib.X.copy()
    X[::4, 0] = np.nan  # imputed in both
    np.testing.assert_allclose(loaded.step_logit_features(X, names), scorer.step_logit(X))
    logits = calib.per_record(scorer.step_logit(calib.X))
    np.testing.assert_allclose(
        loaded.solution_proba_from_steps(logits), scorer.predict_proba(calib)[:, 1]
    )
    assert loaded.meta["threshold"] == pytest.approx(min(scorer.threshold_, 1.0))
    with pytest.raises(BundleError, match="is a step scorer"):
        loaded.predict_proba_features(X, names)
    broken = dict(loaded.tensors)
    broken.pop("impute")
    with pytest.raises(BundleError, match="needs tensor 'impute'"):
        Scorer(loaded.meta, broken).save(tmp_path / "broken")


def test_the_last_step_baseline_flags_the_last_step():
    """``last_step`` keeps its sign whatever train and calib say: its top step is the last
    one, though every error here is in the first step."""
    arrays = synthetic(60, 0, n_features=1)
    arrays.X = (arrays.step / 7.0)[:, None]
    invalid = arrays.valid[arrays.record] == 0
    arrays.labels[invalid] = np.where(arrays.step[invalid] == 0, 1, -1)
    names = ["step_confound/position"]
    spec = next(s for s in STEP_SCORERS if s.name == "last_step")
    train, calib = arrays.subset(np.arange(0, 40)), arrays.subset(np.arange(40, 60))
    from probes.stepeval import fit_step_scorer, predict

    scorer = fit_step_scorer(spec, names, train, calib)
    assert scorer.direction_ == 1.0
    pred = predict(scorer, spec, names, calib)
    for p in calib.per_record(pred.p_wrong):
        assert int(np.argmax(p)) == len(p) - 1
