"""A whole calibration experiment: build -> extract (or reuse the store) -> fit every scorer
-> evaluate on test with intervals -> analyses, plots, W&B, results on disk.

``run_experiment(cfg)`` returns the metrics, so tests call it as ``train.py`` does.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import analysis, plots
from .bundle import from_fitted
from .config import ExperimentConfig, ScorerSpec
from .data.records import write_jsonl
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
        raise ValueError(
            f"option 'build.builder': unknown {cfg.build.builder!r}; known: {sorted(BUILDERS)}"
        )
    write_jsonl(BUILDERS[cfg.build.builder](**cfg.build.options), source)


def run_experiment(cfg: ExperimentConfig) -> dict[str, dict[str, float]]:
    """Run ``cfg`` end to end; returns ``{scorer: {metric: value, metric_lo, metric_hi}}``."""
    out_dir = Path(cfg.results_dir) / cfg.name
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = cfg.to_dict()
    (out_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    tracker = Tracker(cfg.wandb, cfg.name, out_dir, resolved)
    try:
        prepare_data(cfg)
        store = extract(cfg.extract_config()).store
        dm = FeatureDataModule(store)
        dm.setup()
        train, calib, test = (dm.arrays(s) for s in ("train", "calib", "test"))
        fitted = [
            fit_scorer(spec, dm.names, train, calib, _curves(tracker, spec)) for spec in cfg.scorers
        ]
        metrics, probs = evaluate_all(fitted, test, cfg.n_boot, cfg.seed)
        layer_rows = analysis.layer_auroc(dm.names, calib, test)
        audit_rows = analysis.confound_audit(dm.names, train, calib, test)
        _write_json(
            out_dir / "metrics.json",
            {
                "experiment": cfg.name,
                "store": str(store.path),
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
        tracker.log_images(images)
        if cfg.wandb.log_store:
            tracker.log_artifact(store.path, f"store-{cfg.name}", "feature-store")
    finally:
        tracker.finish()
    print(comparison_table(metrics))
    return metrics


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


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=float))


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
