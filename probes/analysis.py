"""Where the signal lives, and what it adds beyond length and log-probability.

* :func:`layer_auroc`: for every (family, layer), the column and direction chosen on calib,
  then its AUROC on test.
* :func:`confound_audit`: the same per family, after regressing every feature on
  the full-length confounds (tokens, characters and steps before truncation) and
  ``confound/logprob`` (least squares fitted on train only).

Choices are made on calib and reported on test, so nothing here is tuned on test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from .featuredata import SplitArrays
from .metrics import auroc

CONFOUNDS = ("confound/n_tokens_full", "confound/n_chars", "confound/n_steps", "confound/logprob")


def family_layer(name: str) -> tuple[str, str]:
    """``lapeig/L03/H05/k2`` -> ``("lapeig", "L03")``; confounds have layer ``-``."""
    parts = name.split("/")
    layer = parts[1] if len(parts) > 1 and parts[1].startswith("L") else "-"
    return parts[0], layer


def _best_on_calib(cols: Sequence[int], calib: SplitArrays, test: SplitArrays, Xc, Xt) -> dict:
    """Among ``cols``, the column and sign with the largest calib |AUROC - 0.5|; its test AUROC."""
    yc, yt = calib.y.numpy(), test.y.numpy()
    aucs = [(a, j) for j in cols if not np.isnan(a := auroc(Xc[:, j], yc))]
    if not aucs:  # every column undefined on calib (one class, or non-finite values)
        return {
            "column": cols[0],
            "direction": 1,
            "calib_auroc": float("nan"),
            "test_auroc": float("nan"),
        }
    calib_auc, j = max(aucs, key=lambda a: abs(a[0] - 0.5))
    sign = 1.0 if calib_auc >= 0.5 else -1.0
    return {
        "column": j,
        "direction": int(sign),
        "calib_auroc": max(calib_auc, 1 - calib_auc),
        "test_auroc": auroc(sign * Xt[:, j], yt),
    }


def layer_auroc(names: Sequence[str], calib: SplitArrays, test: SplitArrays) -> list[dict]:
    """One row per (family, layer): feature chosen on calib, its test AUROC."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for j, n in enumerate(names):
        groups[family_layer(n)].append(j)
    Xc, Xt = calib.X.numpy(), test.X.numpy()
    rows = []
    for (family, layer), cols in sorted(groups.items()):
        best = _best_on_calib(cols, calib, test, Xc, Xt)
        rows.append(
            {"family": family, "layer": layer, "feature": names[best.pop("column")], **best}
        )
    return rows


def residualize(train: SplitArrays, others: Sequence[SplitArrays], names: Sequence[str]):
    """Every column minus its least-squares fit on the confounds (fitted on train only)."""
    idx = [names.index(c) for c in CONFOUNDS]

    def design(a: SplitArrays) -> np.ndarray:
        Z = a.X.numpy()[:, idx]
        return np.column_stack([np.ones(len(Z)), Z])

    Xtr = train.X.numpy()
    beta, *_ = np.linalg.lstsq(design(train), Xtr, rcond=None)  # (3, F)
    return [a.X.numpy() - design(a) @ beta for a in others]


def confound_audit(
    names: Sequence[str], train: SplitArrays, calib: SplitArrays, test: SplitArrays
) -> list[dict]:
    """Per family: test AUROC of the calib-chosen feature, raw and with length and log-prob
    regressed out. Families whose signal is length in disguise drop to ~0.5."""
    if any(c not in names for c in CONFOUNDS):
        raise ValueError(f"the confound audit needs the features {CONFOUNDS}")
    Rc, Rt = residualize(train, [calib, test], names)
    by_family: dict[str, list[int]] = defaultdict(list)
    for j, n in enumerate(names):
        family = family_layer(n)[0]
        if family != "confound":
            by_family[family].append(j)
    Xc, Xt = calib.X.numpy(), test.X.numpy()
    rows = []
    for family, cols in sorted(by_family.items()):
        raw = _best_on_calib(cols, calib, test, Xc, Xt)
        res = _best_on_calib(cols, calib, test, Rc, Rt)
        rows.append(
            {
                "family": family,
                "raw_feature": names[raw["column"]],
                "raw_test_auroc": raw["test_auroc"],
                "residual_feature": names[res["column"]],
                "residual_test_auroc": res["test_auroc"],
            }
        )
    return rows
