"""A whole calibration experiment: build -> extract (or reuse the store) -> fit every scorer
on the single split (what the bundles are) -> evaluate, by grouped cross-validation over
all records (``eval.cv``, see :mod:`probes.crossval`) or on the test split, with intervals,
paired and nested comparisons and the headline -> analyses, plots, W&B, results on disk.

``run_experiment(cfg)`` returns the metrics, so tests call it as ``train.py`` does.

Each run writes a fresh folder ``<results_dir>/<name>/<YYYYmmdd-HHMMSS>/``; when (and only
when) it succeeds, ``<results_dir>/<name>/latest`` is pointed at it. A failed run leaves its
folder with ``status.json`` saying why, and never mixes with an earlier run's files. The
records are checked before any model loads: empty data, one class, or a split that would be
empty or hold one class stop the run with a message that says what to change.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import analysis, compare, crossval, jsonio, plots, stepeval
from .atomic import atomic_write_text
from .bundle import from_fitted, from_step_scorer
from .config import ExperimentConfig, ScorerSpec
from .data.records import write_jsonl
from .data.sources import load_records
from .data.splits import SPLITS, check_splits
from .devices import resolve_device
from .errors import ConfigError, DataError
from .extract import extract
from .featuredata import FeatureDataModule, SplitArrays, select_features
from .fitting import FittedScorer, fit_scorer
from .metrics import evaluate_scores
from .store import is_rank_zero
from .tracking import Tracker


def prepare_data(cfg: ExperimentConfig) -> None:
    """Build ``cfg.data.source`` with ``cfg.build`` if it does not exist yet: once, however
    many processes start at the same time (``torchrun``), under a lock beside the file."""
    source = Path(cfg.data.source)
    if source.exists() or cfg.build.builder is None:
        return
    from filelock import FileLock

    from .data import BUILDERS

    if cfg.build.builder not in BUILDERS:
        raise ConfigError(
            f"option 'build.builder': unknown {cfg.build.builder!r}; known: {sorted(BUILDERS)}"
        )
    source.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(source) + ".lock"):
        if not source.exists():  # another process may have built it while this one waited
            options = dict(cfg.build.options)
            if cfg.build.builder == "generate":  # the model generates where it runs
                options.setdefault("device", cfg.model.device)
                options.setdefault("dtype", cfg.model.dtype)
            write_jsonl(BUILDERS[cfg.build.builder](**options), source)


def new_run_dir(root: Path) -> Path:
    """A fresh ``root/<YYYYmmdd-HHMMSS>[-n]`` folder; a clear error if ``root`` is not
    writable."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        root.mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            run = root / (stamp if n == 0 else f"{stamp}-{n}")
            try:
                run.mkdir()
                return run
            except FileExistsError:
                continue
    except OSError as err:
        raise ConfigError(
            f"option 'results_dir': cannot write results to {root} ({err.strerror}); choose "
            "a writable folder"
        ) from None
    raise ConfigError(f"option 'results_dir': {root} already holds 1000 runs of {stamp}")


def mark_latest(root: Path, run: Path) -> None:
    """Point ``root/latest`` at ``run`` (a relative link, replaced atomically)."""
    tmp = root / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run.name, target_is_directory=True)
    os.replace(tmp, root / "latest")


def resolve_run(folder: str | Path) -> Path:
    """A run folder: ``folder`` itself when it holds a run, else its ``latest`` run."""
    folder = Path(folder)
    if (folder / "metrics.json").is_file():
        return folder
    latest = folder / "latest"
    if (latest / "metrics.json").is_file():
        return latest.resolve()
    raise ConfigError(
        f"{folder} holds no finished run (no metrics.json, and no 'latest' link to a "
        "successful run)"
    )


def check_records(cfg: ExperimentConfig):
    """The experiment's records, checked before any model loads."""
    if 0 in cfg.data.fractions:
        raise ConfigError(
            f"option 'data.fractions': an experiment needs train, calib and test shares > 0, "
            f"got {list(cfg.data.fractions)}"
        )
    records = load_records(cfg.data.source, cfg.data.mapping)
    source = str(cfg.data.source)
    check_splits(records, cfg.data.fractions, cfg.data.seed, source=source, both_classes=True)
    labels, groups = [r.label for r in records], [r.group for r in records]
    k = crossval.choose_k(cfg.eval.cv, labels)
    if k:
        folds = crossval.plan_folds(labels, groups, k, cfg.data.fractions, cfg.data.seed)
        crossval.check_classes(folds, labels, source)
    elif cfg.eval.refit:
        why = "eval.cv is 0" if cfg.eval.cv == 0 else "eval.cv: auto chose the single split"
        raise ConfigError(
            f"option 'eval.refit': a refit on all records takes its calibration from "
            f"cross-validation, and {why} ({len(records)} records); set eval.cv to a number "
            "of folds or eval.refit: false"
        )
    return records


def _check_extracted(arrays: dict, n_skipped: int) -> None:
    """After extraction, skipped (too long) records may have emptied a split."""
    for split in SPLITS:
        y = arrays[split].y
        if len(set(y.tolist())) < 2:
            raise DataError(
                f"after {n_skipped} record(s) were skipped as too long, split {split!r} holds "
                f"{len(y)} record(s) of {len(set(y.tolist()))} class(es); raise "
                "capture.max_tokens or set capture.overflow: truncate"
            )


def truncation_shares(store) -> dict[str, dict[str, dict[str, float]]]:
    """Per split and class (``valid`` / ``invalid``): the share of records cut at
    ``max_tokens`` and the share skipped as too long."""
    data = store.read()
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split in SPLITS:
        out[split] = {}
        for label, name in ((1, "valid"), (0, "invalid")):
            rows = [i for i, s in enumerate(data.splits) if s == split and data.labels[i] == label]
            n = max(len(rows), 1)
            out[split][name] = {
                "n": len(rows),
                "truncated": sum(bool(data.truncated[i]) for i in rows) / n,
                "skipped": sum(bool(data.skipped[i]) for i in rows) / n,
            }
    return out


def truncation_line(shares: dict) -> str:
    """One line: the truncated share per split and class."""
    cells = [
        f"{split} {shares[split]['valid']['truncated']:.0%} / "
        f"{shares[split]['invalid']['truncated']:.0%}"
        for split in SPLITS
    ]
    return "truncated at max_tokens (valid / invalid): " + ", ".join(cells)


def run_experiment(cfg: ExperimentConfig) -> dict[str, dict[str, float]]:
    """Run ``cfg`` end to end; returns ``{scorer: {metric: value, metric_lo, metric_hi}}``.

    Writes a fresh run folder (see the module docstring) and points ``latest`` at it.

    Under DDP (``trainer.strategy: ddp``) only rank 0 tracks, fits, evaluates and writes;
    the other processes (started by Lightning for the extraction, or by ``torchrun``) take
    their share of the extraction and return ``{}``."""
    resolve_device(cfg.model.device)  # a GPU that is not there is named before any work
    if not is_rank_zero():
        prepare_data(cfg)
        extract(cfg.extract_config(), records=check_records(cfg))
        return {}
    root = Path(cfg.results_dir) / cfg.name
    out_dir = new_run_dir(root)
    resolved = cfg.to_dict()
    (out_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    try:
        report = _run(cfg, out_dir, resolved)
    except BaseException as err:
        status = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        jsonio.write_json(out_dir / "status.json", status)
        raise
    jsonio.write_json(out_dir / "status.json", {"status": "succeeded"})
    mark_latest(root, out_dir)
    print(report["evaluation"]["text"])
    print(comparison_table(report["scorers"]))
    if report["paired"]:
        print(compare.comparison_rows_table(report["paired"]))
    if report["nested"]:
        print(compare.nested_table(report["nested"]))
    print(report["headline_text"])
    if "steps" in report:
        steps = report["steps"]
        print(steps["evaluation"])
        print(stepeval.step_table(steps["scorers"]))
        print(stepeval.paired_text(steps["paired"]))
    print(f"results: {out_dir} (also {root / 'latest'})")
    return report["scorers"]


def _run(cfg: ExperimentConfig, out_dir: Path, resolved: dict) -> dict:
    prepare_data(cfg)
    records = check_records(cfg)
    tracker = Tracker(cfg.wandb, cfg.name, out_dir, resolved)
    try:
        extraction = extract(cfg.extract_config(), records=records)
        store = extraction.store
        tracker.log_extraction(extraction.stats())
        store_artifact = tracker.log_store(
            store.path, f"store-{cfg.name}", _store_metadata(store), upload=cfg.wandb.log_store
        )
        dm = FeatureDataModule(store)
        dm.setup()
        arrays = {s: dm.arrays(s) for s in SPLITS}
        _check_extracted(arrays, dm.n_skipped)
        train, calib, test = (arrays[s] for s in SPLITS)
        fitted = [
            fit_scorer(spec, dm.names, train, calib, _curves(tracker, spec)) for spec in cfg.scorers
        ]
        split_metrics, split_probs = evaluate_all(fitted, test, cfg.n_boot, cfg.seed)
        pool = crossval.concat([train, calib, test])
        k = crossval.choose_k(cfg.eval.cv, pool.y.tolist())
        cv = None
        if cfg.eval.refit and not k:
            raise DataError(
                f"option 'eval.refit': after {dm.n_skipped} record(s) were skipped as too "
                f"long, {len(pool.y)} records are too few for eval.cv {cfg.eval.cv!r}; set "
                "eval.cv to a number of folds, or eval.refit: false"
            )
        if k:
            cv = cross_validate(cfg, dm.names, pool, k)
            metrics, probs = crossval.pooled_metrics(cv, cfg.n_boot, cfg.seed), cv.probs
            y, groups = pool.y.numpy(), pool.groups
        else:
            metrics, probs, y, groups = split_metrics, split_probs, test.y.numpy(), test.groups
        evaluation = _evaluation(k, y, groups, cfg.eval.cv)
        selects = {s.name: s.select for s in cfg.scorers}
        paired = compare.paired_rows(selects, probs, y, groups, cfg.n_boot, cfg.seed)
        nested = compare.nested_rows(cfg.scorers, dm.names, probs, y, groups, cfg.n_boot, cfg.seed)
        top = compare.headline(cfg.scorers, probs, y, paired)
        layer_rows = analysis.layer_auroc(dm.names, calib, test)
        audit_rows = analysis.confound_audit(dm.names, train, calib, test)
        truncation = truncation_shares(store)
        print(truncation_line(truncation))
        report = {
            "experiment": cfg.name,
            "run": out_dir.name,
            "store": str(store.path),
            "evaluation": evaluation,
            "truncation": truncation,
            "headline": top,
            "headline_text": compare.headline_line(top),
            "paired": paired,
            "nested": nested,
            "n": {
                "train": len(train.y),
                "calib": len(calib.y),
                "test": len(test.y),
                "skipped": dm.n_skipped,
            },
            "scorers": metrics,
            "split_scorers": split_metrics,
        }
        if store.step_names:
            report["steps"] = run_steps(cfg, store, tracker, out_dir, resolved, store_artifact)
        jsonio.write_json(out_dir / "metrics.json", report)
        _write_csv(out_dir / "layer_auroc.csv", layer_rows)
        _write_csv(out_dir / "confound_audit.csv", audit_rows)
        if cv is not None:
            _write_csv(out_dir / "folds.csv", cv.fold_rows)
        evaluated = pool if cv is not None else test
        where = cv.fold_of().tolist() if cv is not None else ["test"] * len(test.y)
        _write_csv(out_dir / "predictions.csv", _prediction_rows(evaluated, where, probs))
        on = f"{k}-fold out-of-fold predictions" if k else "test"
        images = _plots(out_dir, dm.names, test, y, probs, metrics, layer_rows, on)
        split_fit = {
            "fitted_on": f"train split ({len(train.y)} records)",
            "calibrated_on": f"calib split ({len(calib.y)} records)",
            "metrics": f"test split ({len(test.y)} records)",
        }
        bundles = out_dir / "bundles"
        # The highest evaluated AUROC (an undefined one, NaN, never wins).
        best = max(metrics, key=lambda n: np.nan_to_num(metrics[n]["auroc"], nan=-1.0))
        for path in export_all(fitted, store.manifest, split_metrics, resolved, bundles, split_fit):
            meta = {
                "scorer": path.name,
                "store": store_artifact,
                "fit": split_fit,
                "test_metrics": _numeric(split_metrics[path.name]),
                "evaluated_metrics": _numeric(metrics[path.name]),
                "evaluation": evaluation["text"],
            }
            aliases = ["best"] if path.name == best else []
            tracker.log_artifact(path, f"scorer-{cfg.name}-{path.name}", "model", meta, aliases)
        if cv is not None and cfg.eval.refit:
            refits = [crossval.refit(spec, dm.names, cv) for spec in cfg.scorers]
            refit_fit = {
                "fitted_on": f"all {len(pool.y)} records",
                "calibrated_on": f"the {k}-fold out-of-fold logits (temperature)",
                "metrics": f"{k}-fold cross-validation, pooled out-of-fold",
            }
            for path in export_all(
                refits, store.manifest, metrics, resolved, out_dir / "bundles-refit", refit_fit
            ):
                meta = {
                    "scorer": path.name,
                    "store": store_artifact,
                    "fit": refit_fit,
                    "evaluated_metrics": _numeric(metrics[path.name]),
                }
                tracker.log_artifact(path, f"scorer-{cfg.name}-{path.name}-refit", "model", meta)
        prefix = "cv" if cv is not None else "test"
        tracker.log_results({n: _numeric(m) for n, m in metrics.items()}, prefix)
        if cv is not None:
            tracker.log_results({n: _numeric(m) for n, m in split_metrics.items()}, "test")
            tracker.log_table("folds", cv.fold_rows)
        tracker.log_paired(paired, top)
        tracker.log_table("nested", nested)
        tracker.log_table("layer_auroc", layer_rows)
        tracker.log_table("confound_audit", audit_rows)
        tracker.log_charts(y, probs, on)
        tracker.log_images(images)
    finally:
        tracker.finish()
    return report


def run_steps(cfg: ExperimentConfig, store, tracker: Tracker, out_dir: Path, resolved, artifact):
    """Step localisation (``probes.stepeval``) on a store with a step table: every step
    scorer and baseline evaluated as ``eval.cv`` says, ``step_predictions.csv``, and the
    logistic step scorers of the single split exported to ``bundles-steps/<name>``."""
    data = store.read()
    arrays, names = stepeval.store_step_arrays(data, cfg.seed)
    splits = [
        s for s, skipped in zip(data.splits, data.skipped.tolist(), strict=True) if not skipped
    ]
    result = stepeval.evaluate_steps(
        arrays,
        names,
        splits,
        cfg.eval.cv,
        cfg.data.fractions,
        cfg.data.seed,
        cfg.n_boot,
        logger_for=lambda name: tracker.lightning_logger(f"steps/{name}"),
    )
    _write_csv(out_dir / "step_predictions.csv", result["predictions"])
    n = {s: int((np.asarray(splits) == s).sum()) for s in SPLITS}
    fit = {
        "fitted_on": f"train split ({n['train']} records, their labelled steps)",
        "calibrated_on": f"calib split ({n['calib']} records)",
        "metrics": f"test split ({n['test']} records)",
    }
    manifest = store.manifest
    for spec in stepeval.STEP_SCORERS:
        if spec.kind != "logistic":
            continue
        cols = [names[i] for i in select_features(names, spec.select)]
        row = _numeric(result["split_scorers"][spec.name])
        bundle = from_step_scorer(
            result["fitted"][spec.name],
            spec.name,
            cols,
            manifest["model"],
            manifest["capture"],
            row,
            resolved,
            fit,
        )
        path = bundle.save(out_dir / "bundles-steps" / spec.name)
        meta = {"scorer": spec.name, "store": artifact, "fit": fit, "test_metrics": row}
        tracker.log_artifact(path, f"step-scorer-{cfg.name}-{spec.name}", "model", meta)
    prefix = "steps/cv" if result["folds"] else "steps/test"
    tracker.log_summary(
        {f"{prefix}/{s}/{k}": v for s, row in result["scorers"].items() for k, v in row.items()}
    )
    tracker.log_table("step_metrics", [{"scorer": s, **m} for s, m in result["scorers"].items()])
    tracker.log_table("step_paired", [{"metric": m, **row} for m, row in result["paired"].items()])
    return {k: v for k, v in result.items() if k not in ("fitted", "predictions")}


def _store_metadata(store) -> dict:
    """What a store artifact says of itself: model, capture, dataset and size (from the
    manifest and the shard headers; no values are read)."""
    m = store.manifest
    keys = ("name_or_path", "revision", "weights_hash", "dtype")
    return {
        "model": {k: m["model"].get(k) for k in keys},
        "capture": m["capture"],
        "dataset": m["dataset"],
        "records": len(store.done_ids()),
        "features": len(m["feature_names"]),
        "path": str(store.path),
    }


def cross_validate(
    cfg: ExperimentConfig, names: list[str], pool: SplitArrays, k: int
) -> crossval.CrossValidation:
    """``k``-fold cross-validation of every scorer over the pooled records."""
    labels = pool.y.tolist()
    folds = crossval.plan_folds(labels, pool.groups, k, cfg.data.fractions, cfg.data.seed)
    crossval.check_classes(folds, labels, f"{cfg.data.source} (after extraction)")
    return crossval.cross_validate(cfg.scorers, names, pool, folds)


def _evaluation(k: int, y: np.ndarray, groups, cv_option) -> dict[str, Any]:
    """What the headline and the tables were measured on, as data and as one line."""
    n, n_groups, n_valid = len(y), len(set(groups)), int(np.sum(y == 1))
    if k:
        text = (
            f"evaluation: {k}-fold grouped cross-validation, pooled out-of-fold predictions "
            f"of all {n} records ({n_valid} valid, {n_groups} groups)"
        )
    else:
        why = " (eval.cv: auto, too few records for folds)" if cv_option == "auto" else ""
        text = f"evaluation: the test split, {n} records ({n_valid} valid, {n_groups} groups){why}"
    return {
        "mode": "cv" if k else "split",
        "folds": k,
        "records": n,
        "valid": n_valid,
        "groups": n_groups,
        "text": text,
    }


def evaluate_all(fitted: list[FittedScorer], test: SplitArrays, n_boot: int, seed: int):
    """Metrics with intervals, and P(valid), of every scorer on the test split."""
    Xt, yt = test.X.numpy(), test.y.numpy()
    metrics, probs = {}, {}
    for f in fitted:
        p = f.predict_proba(Xt)[:, 1]
        probs[f.spec.name] = p
        metrics[f.spec.name] = {
            **evaluate_scores(p, yt, f.predict(Xt), test.groups, n_boot, seed),
            **f.describe(),
        }
    return metrics, probs


def export_all(
    fitted: list[FittedScorer],
    manifest: dict,
    metrics: dict,
    config: dict,
    folder: Path,
    fit: dict | None = None,
):
    """Every scorer as a bundle ``folder/<name>``, with ``metrics`` and the ``fit``
    description (what it was fitted, calibrated and measured on); yields the bundle paths."""
    for f in fitted:
        row = _numeric(metrics[f.spec.name])
        bundle = from_fitted(f, manifest["model"], manifest["capture"], row, config, fit)
        yield bundle.save(folder / f.spec.name)


def _curves(tracker: Tracker, spec: ScorerSpec):
    """Training curves go to W&B for the scorers that train."""
    return tracker.lightning_logger(spec.name) if spec.kind == "logistic" else False


def _numeric(row: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if isinstance(v, int | float)}


def comparison_table(metrics: dict[str, dict[str, float]]) -> str:
    """Scorer, AUROC with its interval (and its sd across folds, with cross-validation),
    ECE, Brier, accuracy: the comparison ``make demo`` prints."""
    folds = all("auroc_fold_sd" in m for m in metrics.values())
    sd = f" {'fold sd':>7}" if folds else ""
    lines = [f"{'scorer':18} {'AUROC [95% CI]':>24}{sd} {'ECE':>7} {'Brier':>7} {'acc':>6}"]
    for name, m in metrics.items():
        ci = f"{m['auroc']:.3f} [{m['auroc_lo']:.3f}, {m['auroc_hi']:.3f}]"
        spread = f" {m['auroc_fold_sd']:7.3f}" if folds else ""
        lines.append(
            f"{name:18} {ci:>24}{spread} {m['ece']:7.3f} {m['brier']:7.3f} {m['accuracy']:6.3f}"
        )
    return "\n".join(lines)


def fold_table(metrics: dict[str, dict[str, float]]) -> str:
    """Per scorer, each metric's mean +- sd across the cross-validation folds (each fold's
    own test part); empty without cross-validation."""
    if not all("auroc_fold_mean" in m for m in metrics.values()):
        return ""
    cols = {"auroc": "AUROC", "auprc": "AUPRC", "ece": "ECE", "brier": "Brier"}
    lines = [f"{'scorer':18} " + " ".join(f"{t + ' mean +- sd':>17}" for t in cols.values())]
    for name, m in metrics.items():
        cells = [f"{m[f'{c}_fold_mean']:.3f} +- {m[f'{c}_fold_sd']:.3f}" for c in cols]
        lines.append(f"{name:18} " + " ".join(f"{c:>17}" for c in cells))
    return "\n".join(lines)


def _plots(
    out_dir: Path, names, test: SplitArrays, y, probs, metrics, layer_rows, on: str
) -> list[Path]:
    """ROC and reliability of the evaluated predictions ``probs`` against ``y`` (``on``
    says which); the layer map and the spectra by class on the single split's test
    records."""
    aurocs = {k: v["auroc"] for k, v in metrics.items()}
    paths = [
        plots.roc_curves(y, probs, aurocs, out_dir / "roc.png", on),
        plots.reliability(y, probs, out_dir / "reliability.png", on=on),
        plots.auroc_heatmap(layer_rows, out_dir / "layer_auroc.png"),
    ]
    layers = sorted({n.split("/")[1] for n in names if n.split("/")[0] == "eig_low"})
    if layers:
        picks = sorted({layers[0], layers[len(layers) // 2], layers[-1]})
        paths.append(
            plots.spectra_by_class(
                names, test.X.numpy(), test.y.numpy(), picks, out_dir / "spectra.png"
            )
        )
    return paths


def _prediction_rows(data: SplitArrays, where: list, probs: dict[str, np.ndarray]) -> list[dict]:
    """One row per evaluated record: id, group, label, its fold (or ``test``) and every
    scorer's P(valid): what the metrics, the paired intervals and the plots were computed
    from."""
    y = data.y.tolist()
    return [
        {
            "id": data.ids[i],
            "group": data.groups[i],
            "label": y[i],
            "fold": where[i],
            **{f"p_{name}": float(p[i]) for name, p in probs.items()},
        }
        for i in range(len(y))
    ]


def _write_csv(path: Path, rows: list[dict]) -> None:
    import io

    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
