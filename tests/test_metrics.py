"""The one AUROC, DeLong's paired test and the grouped (paired) bootstrap, each against an
independent computation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from probes.metrics import auroc, delong, group_resamples, paired_bootstrap


def test_one_auroc_matches_sklearn_on_raw_features_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    raw = np.round(rng.normal(500, 200, 300) + 80 * y)  # lengths: far outside [0, 1], ties
    assert auroc(raw, y) == pytest.approx(roc_auc_score(y, raw), abs=1e-12)
    p = 1 / (1 + np.exp(-(raw - 500) / 200))  # probabilities: torchmetrics agrees (float32)
    import torch
    from torchmetrics.functional.classification import binary_auroc

    assert auroc(p, y) == pytest.approx(
        float(binary_auroc(torch.tensor(p), torch.tensor(y))), abs=1e-6
    )
    assert auroc(-raw, y) == pytest.approx(1 - roc_auc_score(y, raw), abs=1e-12)
    assert auroc(np.ones(300), y) == 0.5  # all tied: chance, by definition
    assert np.isnan(auroc(raw, np.ones(300)))  # one class: undefined, never 0.5
    assert np.isnan(auroc(np.r_[raw[:-1], np.nan], y))


def _delong_by_definition(a, b, y):
    """O(m n) structural components, straight from DeLong et al. (1988)."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m, n = len(pos), len(neg)

    def psi(s):  # (m, n): 1 if the positive scores above the negative, 1/2 on ties
        d = s[pos][:, None] - s[neg][None, :]
        return (d > 0) + 0.5 * (d == 0)

    P = [psi(a), psi(b)]
    A = np.array([p.mean() for p in P])
    V10 = np.array([p.mean(axis=1) for p in P])  # (2, m)
    V01 = np.array([p.mean(axis=0) for p in P])  # (2, n)
    S10 = (V10 - A[:, None]) @ (V10 - A[:, None]).T / (m - 1)
    S01 = (V01 - A[:, None]) @ (V01 - A[:, None]).T / (n - 1)
    S = S10 / m + S01 / n
    se = np.sqrt(S[0, 0] + S[1, 1] - 2 * S[0, 1])
    z = (A[0] - A[1]) / se
    return A[0] - A[1], se, 2 * scipy.stats.norm.sf(abs(z))


def test_delong_matches_its_definition():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120)
    a = rng.normal(size=120) + 0.8 * y
    b = np.round(a + rng.normal(scale=0.7, size=120), 1)  # correlated, with ties
    got = delong(a, b, y)
    diff, se, p = _delong_by_definition(a, b, y)
    assert got["diff"] == pytest.approx(diff, abs=1e-12)
    assert got["diff"] == pytest.approx(auroc(a, y) - auroc(b, y), abs=1e-12)
    assert got["se"] == pytest.approx(se, rel=1e-9)
    assert got["p"] == pytest.approx(p, rel=1e-9)


def _obuchowski_by_definition(a, b, y, groups):
    """Obuchowski (1997), clustered: per cluster i, V10_i sums psi over its positives
    (against all negatives, averaged), V01_i over its negatives; explicit loops."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    M, N = len(pos), len(neg)
    clusters = sorted(set(groups))
    n_clusters = len(clusters)

    def parts(s):
        d = s[pos][:, None] - s[neg][None, :]
        psi = (d > 0) + 0.5 * (d == 0)
        A = psi.mean()
        v10, v01, m_i, n_i = [], [], [], []
        for c in clusters:
            rows_p = [j for j, i in enumerate(pos) if groups[i] == c]
            rows_n = [k for k, i in enumerate(neg) if groups[i] == c]
            v10.append(sum(psi[j].mean() for j in rows_p))
            v01.append(sum(psi[:, k].mean() for k in rows_n))
            m_i.append(len(rows_p))
            n_i.append(len(rows_n))
        return A, np.array(v10), np.array(v01), np.array(m_i), np.array(n_i)

    A1, p1, q1, m_i, n_i = parts(a)
    A2, p2, q2, _, _ = parts(b)
    f = n_clusters / (n_clusters - 1)

    def cov(Ar, pr, qr, As, ps, qs):
        s10 = f / M * np.sum((pr - m_i * Ar) * (ps - m_i * As))
        s01 = f / N * np.sum((qr - n_i * Ar) * (qs - n_i * As))
        s11 = f * np.sum((pr - m_i * Ar) * (qs - n_i * As))
        s11_t = f * np.sum((ps - m_i * As) * (qr - n_i * Ar))
        return s10 / M + s01 / N + (s11 + s11_t) / (M * N)

    var = cov(A1, p1, q1, A1, p1, q1) + cov(A2, p2, q2, A2, p2, q2)
    var -= 2 * cov(A1, p1, q1, A2, p2, q2)
    se = np.sqrt(var)
    return A1 - A2, se, 2 * scipy.stats.norm.sf(abs((A1 - A2) / se))


def test_clustered_delong_matches_obuchowski_by_definition():
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 5, 40)
    groups = [f"g{i}" for i, k in enumerate(sizes) for _ in range(k)]
    n = len(groups)
    y = rng.integers(0, 2, n)
    a = rng.normal(size=n) + 0.8 * y
    b = np.round(a + rng.normal(scale=0.8, size=n), 1)
    got = delong(a, b, y, groups)
    diff, se, p = _obuchowski_by_definition(a, b, y, groups)
    assert got["diff"] == pytest.approx(diff, abs=1e-12)
    assert got["se"] == pytest.approx(se, rel=1e-9)
    assert got["p"] == pytest.approx(p, rel=1e-9)
    # One record per group: the plain test, up to I (M - 1) / ((I - 1) M) on each term.
    single = delong(a, b, y, [str(i) for i in range(n)])
    assert single["se"] == pytest.approx(delong(a, b, y)["se"], rel=0.02)


def test_clustered_delong_has_the_spread_of_clustered_data():
    # Groups of three records of one class that share a problem effect (which moves the
    # two scorers in opposite directions): records of a group are not independent, and
    # only the clustered variance matches the spread of the difference over replications.
    rng = np.random.default_rng(8)
    diffs, clustered, plain = [], [], []
    for _ in range(300):
        yg, u = rng.integers(0, 2, 120), rng.normal(size=120)
        y, uu = np.repeat(yg, 3), np.repeat(u, 3)
        groups = np.repeat(np.arange(120), 3).astype(str)
        a = uu + 0.8 * y + rng.normal(size=360)
        b = -uu + 0.8 * y + rng.normal(size=360)
        d = delong(a, b, y, groups)
        diffs.append(d["diff"])
        clustered.append(d["se"])
        plain.append(delong(a, b, y)["se"])
    sd = np.std(diffs)
    assert np.mean(clustered) == pytest.approx(sd, rel=0.12)
    assert np.mean(plain) < 0.75 * sd  # the plain test would be anti-conservative here


def test_group_resamples_keep_groups_whole():
    groups = [f"g{i // 3}" for i in range(30)]  # 10 groups of 3

    def whole(pick):
        counts = Counter(np.asarray(groups)[pick])
        rows = Counter(pick.tolist())
        # Every row of a drawn group appears as often as the group was drawn.
        return all(rows[i] == counts[groups[i]] // 3 for i in range(30))

    assert all(whole(pick) for pick in group_resamples(groups, 50, 0))
    rng = np.random.default_rng(0)
    ungrouped = [rng.integers(0, 30, 30) for _ in range(50)]
    assert not all(whole(pick) for pick in ungrouped)  # the check can fail


def test_paired_bootstrap_of_a_scorer_against_itself_is_zero():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 80)
    a = rng.normal(size=80) + y
    groups = [str(i // 2) for i in range(80)]
    same = paired_bootstrap(a, a, y, groups, n_boot=50)
    assert (same["diff"], same["lo"], same["hi"]) == (0.0, 0.0, 0.0)
    other = paired_bootstrap(a, rng.normal(size=80), y, groups, n_boot=200)
    assert other["lo"] <= other["diff"] <= other["hi"] and other["lo"] > 0


def test_headline_is_the_spectral_calibrator_against_the_best_confound():
    from probes.compare import headline, headline_line, paired_rows
    from probes.config import ScorerSpec

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 100)
    probs = {
        "threshold": rng.random(100),
        "spectral_lr": y * 0.5 + rng.random(100),
        "length": rng.random(100),
        "logprob": y * 0.2 + rng.random(100),  # the better confound on test
    }
    specs = [
        ScorerSpec("threshold", "threshold"),
        ScorerSpec("spectral_lr", "logistic"),
        ScorerSpec("length", "logistic", select=("confound/n_tokens_full",)),
        ScorerSpec("logprob", "logistic", select=("confound/logprob",)),
    ]
    groups = [str(i) for i in range(100)]
    rows = paired_rows({s.name: s.select for s in specs}, probs, y, groups, 100, 0)
    assert {(r["scorer"], r["baseline"]) for r in rows} == {
        (s, b) for s in ("threshold", "spectral_lr") for b in ("length", "logprob")
    }
    top = headline(specs, probs, y, rows)
    assert (top["scorer"], top["baseline"]) == ("spectral_lr", "logprob")
    assert top["diff"] == pytest.approx(auroc(probs["spectral_lr"], y) - auroc(probs["logprob"], y))
    assert headline_line(top).startswith("spectral_lr - best confound (logprob) = +")


def test_paired_interval_agrees_with_delong_on_independent_records():
    # With one record per group the bootstrap and DeLong's normal interval estimate the same
    # sampling spread; with 600 records they agree to about a hundredth.
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 600)
    a = rng.normal(size=600) + 0.9 * y
    b = 0.6 * a + rng.normal(size=600) + 0.2 * y
    boot = paired_bootstrap(a, b, y, [str(i) for i in range(600)], n_boot=2000, seed=1)
    d = delong(a, b, y)
    assert boot["diff"] == pytest.approx(d["diff"], abs=1e-12)
    assert boot["lo"] == pytest.approx(d["diff"] - 1.96 * d["se"], abs=0.012)
    assert boot["hi"] == pytest.approx(d["diff"] + 1.96 * d["se"], abs=0.012)


def test_log_loss_matches_sklearn_and_pairs_like_auroc():
    from sklearn.metrics import log_loss as sk_log_loss

    from probes.metrics import log_loss

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    p = np.clip(rng.random(200) * 0.6 + 0.4 * y, 0.01, 0.99)
    assert log_loss(p, y) == pytest.approx(sk_log_loss(y, p), rel=1e-12)
    groups = [str(i // 4) for i in range(200)]
    out = paired_bootstrap(p, np.full(200, 0.5), y, groups, 200, 0, metric=log_loss)
    assert out["diff"] == pytest.approx(sk_log_loss(y, p) - np.log(2), rel=1e-9)
    assert out["lo"] <= out["diff"] <= out["hi"] < 0  # better than a coin, with its interval


def test_nested_pairs_are_found_by_the_features_they_select():
    from probes.compare import nested_rows
    from probes.config import SPECTRAL_CONFOUNDS, ScorerSpec

    names = ["eig_low/L00", "eig_high/L00", "confound/logprob", "confound/n_chars"]
    specs = [
        ScorerSpec("spectral_lr", "logistic"),
        ScorerSpec("spectral_confounds", "logistic", select=SPECTRAL_CONFOUNDS),
        ScorerSpec("logprob", "logistic", select=("confound/logprob",)),
        ScorerSpec("confounds", "logistic", select=("confound/*",)),
        ScorerSpec("threshold", "threshold"),
    ]
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 100)
    probs = {s.name: np.clip(rng.random(100) * 0.5 + 0.3 * y, 0.01, 0.99) for s in specs}
    rows = nested_rows(specs, names, probs, y, [str(i) for i in range(100)], 50, 0)
    assert {(r["scorer"], r["baseline"]) for r in rows} == {
        ("spectral_confounds", "logprob"),
        ("spectral_confounds", "confounds"),
    }
    from probes.metrics import log_loss

    for r in rows:
        a, b = probs[r["scorer"]], probs[r["baseline"]]
        assert r["logloss_diff"] == pytest.approx(log_loss(a, y) - log_loss(b, y))
        assert r["auroc_diff"] == pytest.approx(auroc(a, y) - auroc(b, y))
        assert r["logloss_lo"] <= r["logloss_hi"] and 0 <= r["p"] <= 1
