"""Compare saved scorer bundles side by side on a split of a feature store or on new data
(``probes evaluate``).

With ``data`` every record is scored (the frozen model runs the bundles' capture); with a
store the stored features of one split are read (the store must come from the same model and
capture config). :func:`compare_bundles` returns the metrics with grouped bootstrap
intervals and, when some bundles read only ``confound/*`` features, every other bundle
against each of them on the same records (paired grouped-bootstrap interval, clustered
DeLong p), as an experiment does.
"""

from __future__ import annotations

import json

import numpy as np

from . import compare
from .bundle import BundleError, Scorer, check_model
from .metrics import evaluate_scores


def on_store(scorers: list[Scorer], store_path: str, split: str, n_boot: int, seed: int):
    """Metrics of every bundle on one split of a store; also its P(valid), labels and
    groups, for the paired comparisons."""
    from .featuredata import FeatureDataModule

    dm = FeatureDataModule(store_path)
    manifest = dm.store.manifest
    for s in scorers:
        check_model(s.meta, manifest["model"], other=f"store {store_path}")
        if s.meta["capture"] != manifest["capture"]:
            raise BundleError(
                f"bundle {s.meta['name']!r} was made with another capture config than {store_path}"
            )
    a = dm.arrays(split)
    X, y = a.X.numpy(), a.y.numpy()
    probs, metrics = {}, {}
    for s in scorers:
        name = s.meta["name"]
        probs[name] = s.predict_proba_features(X, dm.names)[:, 1]
        decision = s.predict_features(X, dm.names)
        metrics[name] = evaluate_scores(probs[name], y, decision, a.groups, n_boot, seed)
    return metrics, probs, y, a.groups


def on_data(scorers: list[Scorer], source: str, n_boot: int, seed: int, batch_size: int):
    """Metrics of every bundle on the records of ``source`` (texts skipped by any bundle
    are left out for all, so that all are compared on the same records)."""
    from .data import load_records

    records = load_records(source)
    y = np.array([r.label for r in records])
    groups = [r.group for r in records]
    keep = np.ones(len(records), dtype=bool)
    extracted, cache = {}, {}
    for s in scorers:
        key = json.dumps([s.meta["model"], s.meta["capture"]], sort_keys=True)
        if key not in cache:  # one forward pass per distinct model + capture config
            cache[key] = s.features(records, batch_size=batch_size, progress=True)
        extracted[s.meta["name"]] = cache[key]
        keep &= ~cache[key].skipped.numpy()  # compare every bundle on the same records
    g = [grp for grp, k in zip(groups, keep, strict=True) if k]
    probs, metrics = {}, {}
    for s in scorers:
        name, ex = s.meta["name"], extracted[s.meta["name"]]
        X = ex.values.numpy()[keep]
        probs[name] = s.predict_proba_features(X, ex.names)[:, 1]
        decision = s.predict_features(X, ex.names)
        metrics[name] = evaluate_scores(probs[name], y[keep], decision, g, n_boot, seed)
    return metrics, probs, y[keep], g


def compare_bundles(
    bundles: list[str],
    store: str | None = None,
    data: str | None = None,
    split: str = "test",
    n_boot: int = 500,
    seed: int = 0,
    batch_size: int = 4,
    device: str = "auto",
    dtype: str | None = None,
) -> dict:
    """``{"scorers": {name: metrics}, "paired": [rows]}`` of the bundles on a store split or
    on the records of ``data`` (exactly one of them)."""
    if (store is None) == (data is None):
        raise BundleError("give a store or data to compare the bundles on (exactly one)")
    scorers = [Scorer.load(p, device=device, dtype=dtype) for p in bundles]
    names = [s.meta["name"] for s in scorers]
    if len(set(names)) != len(names):
        raise BundleError(f"--bundles: two bundles share a name ({names}); compare them apart")
    if store is not None:
        metrics, probs, y, groups = on_store(scorers, store, split, n_boot, seed)
    else:
        metrics, probs, y, groups = on_data(scorers, data, n_boot, seed, batch_size)
    reads = {s.meta["name"]: s.meta["feature_names"] for s in scorers}
    paired = compare.paired_rows(reads, probs, y, groups, n_boot, seed)
    return {"scorers": metrics, "paired": paired}
