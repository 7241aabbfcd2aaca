"""Compare saved scorer bundles side by side on a split of a feature store or on new data.

    python evaluate.py --bundles results/gsm-perturb/latest/bundles/* --store stores/<...>
    python evaluate.py --bundles results/gsm-perturb/latest/bundles/* --data runs/data/other.jsonl

With ``--data`` every record is scored (the frozen model runs the bundles' capture); with
``--store`` the stored features of one split are read (the store must come from the same
model and capture config). Prints the comparison table with grouped bootstrap intervals,
then, when some bundles read only ``confound/*`` features, every other bundle against each of
them on the same records (paired grouped-bootstrap interval, clustered DeLong p), as an
experiment does. ``--json`` writes ``{"scorers": {name: metrics}, "paired": [rows]}``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from probes import compare, jsonio
from probes.bundle import BundleError, Scorer, check_model
from probes.errors import report_errors
from probes.experiment import comparison_table
from probes.metrics import evaluate_scores


def on_store(scorers: list[Scorer], store_path: str, split: str, n_boot: int, seed: int):
    """Metrics of every bundle on one split of a store; also its P(valid), labels and
    groups, for the paired comparisons."""
    from probes.featuredata import FeatureDataModule

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
    from probes.data import load_records

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundles", nargs="+", required=True, help="scorer bundle folders")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="a feature store folder")
    where.add_argument("--data", help="a record file (.jsonl/.csv/.parquet) to score")
    parser.add_argument("--split", default="test", choices=["train", "calib", "test"])
    parser.add_argument("--n-boot", dest="n_boot", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=4)
    parser.add_argument("--json", help="write the metrics here")
    parser.add_argument(
        "--device",
        default="auto",
        help="with --data: where the frozen model runs (auto, cpu, cuda or cuda:N)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help="with --data: the model's weight precision (default: the bundle's)",
    )
    args = parser.parse_args(argv)

    def run() -> int:
        if args.json:
            from probes.atomic import refuse_overwrite

            refuse_overwrite(args.json, *(p for p in (args.data, args.store) if p), option="--json")
        scorers = [Scorer.load(p, device=args.device, dtype=args.dtype) for p in args.bundles]
        names = [s.meta["name"] for s in scorers]
        if len(set(names)) != len(names):
            raise BundleError(f"--bundles: two bundles share a name ({names}); compare them apart")
        if args.store:
            result = on_store(scorers, args.store, args.split, args.n_boot, args.seed)
        else:
            result = on_data(scorers, args.data, args.n_boot, args.seed, args.batch_size)
        metrics, probs, y, groups = result
        reads = {s.meta["name"]: s.meta["feature_names"] for s in scorers}
        paired = compare.paired_rows(reads, probs, y, groups, args.n_boot, args.seed)
        print(comparison_table(metrics))
        if paired:
            print(compare.comparison_rows_table(paired))
        if args.json:
            jsonio.write_json(args.json, {"scorers": metrics, "paired": paired})
        return 0

    return report_errors("evaluate.py", run)


if __name__ == "__main__":
    raise SystemExit(main())
