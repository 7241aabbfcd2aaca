"""A whole calibration experiment: build -> extract (or reuse the store) -> fit every scorer
-> evaluate on test with intervals -> analyses, plots, W&B, results on disk.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import analysis, compare, jsonio, plots
from .atomic import atomic_write_text
from .bundle import from_fitted
from .config import ExperimentConfig, ScorerSpec
from .data.records import write_jsonl
from .data.sources import load_records
from .data.splits import SPLITS, check_splits
from .errors import ConfigError, DataError
from .extract import extract
from .featuredata import FeatureDataModule, SplitArrays, select_features
from .metrics import evaluate_scores
from .scorers import LogisticCalibrator, ThresholdBaseline
from .tracking import Tracker


@dataclass
class FittedScorer:
    """A fitted scorer with the features it reads (names in store order)."""

    spec: ScorerSpec
    model: Any
    names: list[str]
    columns: list[int] = field(repr=False)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(X[:, self.columns])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(X[:, self.columns])


def fit_scorer(
    spec: ScorerSpec, names: list[str], train: SplitArrays, calib: SplitArrays, logger=False
) -> FittedScorer:
    """Fit one scorer on its selected features; a threshold reads calib only."""
    cols = select_features(names, spec.select)
    chosen = [names[j] for j in cols]
    Xtr, Xc = train.X.numpy()[:, cols], calib.X.numpy()[:, cols]
    if spec.kind == "threshold":
        model = ThresholdBaseline(feature=spec.feature, label_free=spec.label_free)
        model.fit(Xc, None if spec.label_free else calib.y.numpy(), chosen)
    else:
        model = LogisticCalibrator(
            weight_decay=spec.weight_decay,
            temperature=spec.temperature,
            prior_correction=spec.prior_correction,
            max_epochs=spec.max_epochs,
            logger=logger,
        ).fit(Xtr, train.y.numpy(), Xc, calib.y.numpy())
    return FittedScorer(spec, model, chosen, cols)


def prepare_data(cfg: ExperimentConfig) -> None:
    """Build ``cfg.data.source`` with ``cfg.build`` if it does not exist yet."""
    source = Path(cfg.data.source)
    if source.exists() or cfg.build.builder is None:
        return
    from .data import BUILDERS

    if cfg.build.builder not in BUILDERS:
        raise ConfigError(
            f"option 'build.builder': unknown {cfg.build.builder!r}; known: {sorted(BUILDERS)}"
        )
    write_jsonl(BUILDERS[cfg.build.builder](**cfg.build.options), source)


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
    check_splits(
        records, cfg.data.fractions, cfg.data.seed, source=str(cfg.data.source), both_classes=True
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

    Writes a fresh run folder (see the module docstring) and points ``latest`` at it."""
    root = Path(cfg.results_dir) / cfg.name
    out_dir = new_run_dir(root)
    resolved = cfg.to_dict()
    (out_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    try:
        metrics, paired, top = _run(cfg, out_dir, resolved)
    except BaseException as err:
        status = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        jsonio.write_json(out_dir / "status.json", status)
        raise
    jsonio.write_json(out_dir / "status.json", {"status": "succeeded"})
    mark_latest(root, out_dir)
    print(comparison_table(metrics))
    if paired:
        print(compare.comparison_rows_table(paired))
    print(compare.headline_line(top))
    print(f"results: {out_dir} (also {root / 'latest'})")
    return metrics


def _run(cfg: ExperimentConfig, out_dir: Path, resolved: dict) -> dict:
    prepare_data(cfg)
    records = check_records(cfg)
    tracker = Tracker(cfg.wandb, cfg.name, out_dir, resolved)
    try:
        store = extract(cfg.extract_config(), records=records).store
        dm = FeatureDataModule(store)
        dm.setup()
        arrays = {s: dm.arrays(s) for s in SPLITS}
        _check_extracted(arrays, dm.n_skipped)
        train, calib, test = (arrays[s] for s in SPLITS)
        fitted = [
            fit_scorer(spec, dm.names, train, calib, _curves(tracker, spec)) for spec in cfg.scorers
        ]
        metrics, probs = evaluate_all(fitted, test, cfg.n_boot, cfg.seed)
        selects = {f.spec.name: f.spec.select for f in fitted}
        yt = test.y.numpy()
        paired = compare.paired_rows(selects, probs, yt, test.groups, cfg.n_boot, cfg.seed)
        top = compare.headline([f.spec for f in fitted], probs, yt, paired)
        layer_rows = analysis.layer_auroc(dm.names, calib, test)
        audit_rows = analysis.confound_audit(dm.names, train, calib, test)
        truncation = truncation_shares(store)
        print(truncation_line(truncation))
        jsonio.write_json(
            out_dir / "metrics.json",
            {
                "experiment": cfg.name,
                "run": out_dir.name,
                "store": str(store.path),
                "truncation": truncation,
                "headline": top,
                "headline_text": compare.headline_line(top),
                "paired": paired,
                "n": {
                    "train": len(train.y),
                    "calib": len(calib.y),
                    "test": len(test.y),
                    "skipped": dm.n_skipped,
                },
                "scorers": metrics,
            },
        )
        _write_csv(out_dir / "layer_auroc.csv", layer_rows)
        _write_csv(out_dir / "confound_audit.csv", audit_rows)
        images = _plots(out_dir, dm.names, test, probs, metrics, layer_rows)
        for path in export_all(fitted, store.manifest, metrics, resolved, out_dir / "bundles"):
            tracker.log_artifact(path, f"scorer-{cfg.name}-{path.name}", "model")
        tracker.log_results({k: _numeric(v) for k, v in metrics.items()})
        tracker.log_paired(paired, top)
        tracker.log_images(images)
        if cfg.wandb.log_store:
            tracker.log_artifact(store.path, f"store-{cfg.name}", "feature-store")
    finally:
        tracker.finish()
    return metrics, paired, top


def evaluate_all(fitted: list[FittedScorer], test: SplitArrays, n_boot: int, seed: int):
    """Metrics with intervals, and P(valid), of every scorer on the test split."""
    Xt, yt = test.X.numpy(), test.y.numpy()
    metrics, probs = {}, {}
    for f in fitted:
        p = f.predict_proba(Xt)[:, 1]
        probs[f.spec.name] = p
        metrics[f.spec.name] = {
            **evaluate_scores(p, yt, f.predict(Xt), test.groups, n_boot, seed),
            **_describe(f),
        }
    return metrics, probs


def export_all(
    fitted: list[FittedScorer], manifest: dict, metrics: dict, config: dict, folder: Path
):
    """Every scorer as a bundle ``folder/<name>``; yields the bundle paths."""
    for f in fitted:
        bundle = from_fitted(
            f, manifest["model"], manifest["capture"], _numeric(metrics[f.spec.name]), config
        )
        yield bundle.save(folder / f.spec.name)


def _curves(tracker: Tracker, spec: ScorerSpec):
    """Training curves go to W&B for the scorers that train."""
    return tracker.lightning_logger(spec.name) if spec.kind == "logistic" else False


def _describe(f: FittedScorer) -> dict[str, Any]:
    if isinstance(f.model, ThresholdBaseline):
        return {"threshold": f.model.threshold_, "feature": f.model.feature_, "n_features": 1}
    return {
        "threshold": 0.5,
        "temperature": f.model.temperature_,
        "prior_shift": f.model.prior_shift_,
        "weight_decay": f.model.weight_decay_,
        "n_features": len(f.names),
    }


def _numeric(row: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if isinstance(v, int | float)}


def comparison_table(metrics: dict[str, dict[str, float]]) -> str:
    """Scorer, AUROC with its interval, ECE, Brier: the comparison ``make demo`` prints."""
    lines = [f"{'scorer':14} {'AUROC [95% CI]':>24} {'ECE':>7} {'Brier':>7} {'acc':>6}"]
    for name, m in metrics.items():
        ci = f"{m['auroc']:.3f} [{m['auroc_lo']:.3f}, {m['auroc_hi']:.3f}]"
        lines.append(f"{name:14} {ci:>24} {m['ece']:7.3f} {m['brier']:7.3f} {m['accuracy']:6.3f}")
    return "\n".join(lines)


def _plots(out_dir: Path, names, test: SplitArrays, probs, metrics, layer_rows) -> list[Path]:
    y = test.y.numpy()
    paths = [
        plots.roc_curves(
            y, probs, {k: v["auroc"] for k, v in metrics.items()}, out_dir / "roc.png"
        ),
        plots.reliability(y, probs, out_dir / "reliability.png"),
        plots.auroc_heatmap(layer_rows, out_dir / "layer_auroc.png"),
    ]
    layers = sorted({n.split("/")[1] for n in names if n.split("/")[0] == "eig_low"})
    if layers:
        picks = sorted({layers[0], layers[len(layers) // 2], layers[-1]})
        paths.append(
            plots.spectra_by_class(names, test.X.numpy(), y, picks, out_dir / "spectra.png")
        )
    return paths


def _write_csv(path: Path, rows: list[dict]) -> None:
    import io

    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
