"""Paired comparisons of scorers on the same test records: what the spectra add beyond the
confounds, as one interval on the difference rather than two overlapping ones.

For each scorer that is not a confound baseline, against each confound baseline (a scorer
that reads ``confound/*`` features only: length, log-probability), :func:`paired_rows` gives
the AUROC difference with a paired grouped-bootstrap interval and DeLong's p-value (its
clustered form, so that both respect the groups). The
headline is the first spectral scorer against the best confound baseline, the one with the
highest AUROC on the evaluated records (out-of-fold, or the test split): a conservative
choice, since picking it there favours the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import SPECTRAL, ScorerSpec
from .featuredata import select_features
from .metrics import auroc, delong, log_loss, paired_bootstrap


def is_confound_baseline(select: Sequence[str]) -> bool:
    """A scorer whose feature patterns all name confounds."""
    return bool(select) and all(p.startswith("confound/") for p in select)


def paired_rows(
    scorers: dict[str, Sequence[str]],
    probs: dict[str, np.ndarray],
    y: np.ndarray,
    groups: Sequence[str],
    n_boot: int,
    seed: int,
) -> list[dict]:
    """One row per (scorer, confound baseline): ``scorer``, ``baseline``, ``diff``, ``lo``,
    ``hi`` (paired grouped bootstrap, 95%), ``p`` (DeLong), ``n_undefined`` resamples.

    Args:
        scorers: name -> its ``select`` patterns, in config order.
        probs: name -> ``(N,)`` P(valid) on the test records.
    """
    baselines = [n for n, sel in scorers.items() if is_confound_baseline(sel)]
    rows = []
    for name, sel in scorers.items():
        if is_confound_baseline(sel):
            continue
        for base in baselines:
            boot = paired_bootstrap(probs[name], probs[base], y, groups, n_boot, seed)
            test = delong(probs[name], probs[base], y, groups)
            rows.append({"scorer": name, "baseline": base, **boot, "p": test["p"]})
    return rows


def nested_rows(
    specs: Sequence[ScorerSpec],
    names: Sequence[str],
    probs: dict[str, np.ndarray],
    y: np.ndarray,
    groups: Sequence[str],
    n_boot: int,
    seed: int,
) -> list[dict]:
    """Nested pairs: a logistic scorer against a logistic confound baseline whose features
    are a strict subset of its own (``spectral_confounds`` against ``confounds``: do the
    spectra add to the confounds they are fitted with?). One row per pair: ``auroc_diff``
    with its paired grouped-bootstrap interval and DeLong's ``p``, and ``logloss_diff``
    (``log_loss(scorer) - log_loss(baseline)``: negative when the spectra help) with its
    interval.

    Args:
        names: the store's feature names, which the ``select`` patterns are matched on.
        probs: name -> ``(N,)`` P(valid) on the evaluated records.
    """
    logistic = [s for s in specs if s.kind == "logistic"]
    cols = {s.name: set(select_features(names, s.select)) for s in logistic}
    rows = []
    for a in logistic:
        if is_confound_baseline(a.select):
            continue
        for b in logistic:
            if not is_confound_baseline(b.select) or not cols[b.name] < cols[a.name]:
                continue
            pa, pb = probs[a.name], probs[b.name]
            auc = paired_bootstrap(pa, pb, y, groups, n_boot, seed)
            nll = paired_bootstrap(pa, pb, y, groups, n_boot, seed, metric=log_loss)
            rows.append(
                {
                    "scorer": a.name,
                    "baseline": b.name,
                    "auroc_diff": auc["diff"],
                    "auroc_lo": auc["lo"],
                    "auroc_hi": auc["hi"],
                    "p": delong(pa, pb, y, groups)["p"],
                    "logloss_diff": nll["diff"],
                    "logloss_lo": nll["lo"],
                    "logloss_hi": nll["hi"],
                }
            )
    return rows


def nested_table(rows: list[dict]) -> str:
    """The nested pairs as a text table."""
    lines = [
        f"{'nested':18} {'- baseline':12} {'AUROC diff [95% CI]':>26} {'p':>8} "
        f"{'log-loss diff [95% CI]':>26}"
    ]
    for r in rows:
        auc = f"{r['auroc_diff']:+.3f} [{r['auroc_lo']:+.3f}, {r['auroc_hi']:+.3f}]"
        nll = f"{r['logloss_diff']:+.3f} [{r['logloss_lo']:+.3f}, {r['logloss_hi']:+.3f}]"
        lines.append(f"{r['scorer']:18} {r['baseline']:12} {auc:>26} {r['p']:8.3g} {nll:>26}")
    return "\n".join(lines)


def headline(
    specs: Sequence[ScorerSpec], probs: dict[str, np.ndarray], y: np.ndarray, rows
) -> dict | None:
    """The first spectral scorer (selecting the default spectral features; a logistic one
    before a threshold) against the confound baseline with the highest AUROC on the
    evaluated records."""
    baselines = [s.name for s in specs if is_confound_baseline(s.select)]
    spectral = [s for s in specs if tuple(s.select) == SPECTRAL]
    spectral = [s.name for s in sorted(spectral, key=lambda s: s.kind != "logistic")]
    if not baselines or not spectral:
        return None
    best = max(baselines, key=lambda b: np.nan_to_num(auroc(probs[b], y), nan=-1))
    row = next(r for r in rows if r["scorer"] == spectral[0] and r["baseline"] == best)
    return dict(row)


def headline_line(h: dict | None) -> str:
    """``spectral_lr - best confound (logprob) = +0.111 [0.010, 0.210] (p = 0.03)``."""
    if h is None:
        return "no headline: the experiment has no spectral scorer or no confound baseline"
    return (
        f"{h['scorer']} - best confound ({h['baseline']}) = {h['diff']:+.3f} "
        f"[{h['lo']:+.3f}, {h['hi']:+.3f}] (DeLong p = {h['p']:.3g})"
    )


def comparison_rows_table(rows: list[dict]) -> str:
    """The paired comparisons as a text table."""
    lines = [f"{'scorer':18} {'- baseline':12} {'AUROC diff [95% CI]':>26} {'p':>8}"]
    for r in rows:
        ci = f"{r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"
        lines.append(f"{r['scorer']:18} {r['baseline']:12} {ci:>26} {r['p']:8.3g}")
    return "\n".join(lines)
