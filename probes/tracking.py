"""Weights & Biases: one run per experiment, grouped by experiment name.

``mode: offline`` (the default) writes everything under the results folder and sends nothing;
``wandb sync <results>/<name>/wandb/offline-run-*`` uploads it later.

What a run holds, one key scheme throughout (``<where>/<scorer>/<metric>``):

* summary: ``cv/<scorer>/<metric>`` (pooled out-of-fold) and ``test/<scorer>/<metric>``
  (the single split's test records), ``headline/*``, ``extract/*`` (records, texts/s,
  tokens/s, solver counts);
* tables: ``cv/comparison``, ``test/comparison``, ``folds``, ``paired``, ``nested``,
  ``headline``, ``layer_auroc``, ``confound_audit``;
* charts (``wandb.plot``): ``charts/roc``, ``charts/pr``, ``charts/calibration``, one line
  per scorer; the PNGs under ``plots/*``;
* training curves: ``curves/<scorer>/train/loss``, ``curves/<scorer>/calib/loss``;
* artifacts: the feature store (``feature-store``) as the run's input, each bundle
  (``model``) as an output with its metrics in the metadata, the best one aliased ``best``.
  W&B refuses ``use_artifact`` offline ("Cannot use artifact when in offline mode"), so an
  offline run logs the store as an output instead and every bundle names it in its
  metadata (``store``); online, it is a true input.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import WandbConfig
from .metrics import METRICS


def run_mode(configured: str) -> str:
    """W&B's mode: ``$WANDB_MODE`` when set (W&B's own variable wins, as users expect),
    else ``online`` under a sweep agent (``$WANDB_SWEEP_ID``: the agent needs the server),
    else ``wandb.mode``."""
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    if env == "dryrun":
        return "offline"
    if os.environ.get("WANDB_SWEEP_ID"):
        return "online"
    return configured


class Tracker:
    """A thin wrapper: ``run`` is ``None`` when W&B is disabled, and every call is a no-op."""

    def __init__(self, cfg: WandbConfig, name: str, directory: Path, config: dict[str, Any]):
        self.cfg = cfg
        self.mode = run_mode(cfg.mode)
        self.run = None
        if self.mode == "disabled":
            return
        import wandb

        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            name=name,
            group=name,
            job_type="calibration",
            mode=self.mode,
            dir=str(directory),
            config=config,
            reinit="finish_previous",
        )

    def lightning_logger(self, scorer: str):
        """A ``WandbLogger`` on this run for a LogisticCalibrator's curves, keyed
        ``curves/<scorer>/train/loss`` (``False`` if W&B is off)."""
        if self.run is None:
            return False
        from lightning.pytorch.loggers import WandbLogger

        class SlashLogger(WandbLogger):
            LOGGER_JOIN_CHAR = "/"  # Lightning joins prefix and key with "-"

        return SlashLogger(experiment=self.run, prefix=f"curves/{scorer}")

    @property
    def offline(self) -> bool:
        return self.run is not None and self.mode == "offline"

    def log_charts(self, y, probs: Mapping[str, Any], on: str) -> None:
        """ROC, precision-recall and reliability of every scorer as ``wandb.plot`` line
        charts (one line per scorer) on the evaluated records ``on``."""
        if self.run is None:
            return
        import wandb
        from sklearn.calibration import calibration_curve
        from sklearn.metrics import precision_recall_curve, roc_curve

        names = list(probs)
        curves = {"roc": ([], []), "pr": ([], []), "calibration": ([], [])}
        for name in names:
            fpr, tpr, _ = roc_curve(y, probs[name])
            precision, recall, _ = precision_recall_curve(y, probs[name])
            observed, predicted = calibration_curve(y, probs[name], n_bins=15)
            for key, (xs, ys) in zip(
                curves, ((fpr, tpr), (recall, precision), (predicted, observed)), strict=True
            ):
                curves[key][0].append(xs.tolist())
                curves[key][1].append(ys.tolist())
        axes = {
            "roc": ("false positive rate", "ROC"),
            "pr": ("recall", "precision-recall"),
            "calibration": ("predicted P(valid)", "reliability (observed valid rate)"),
        }
        self.run.log(
            {
                f"charts/{key}": wandb.plot.line_series(
                    xs=xs, ys=ys, keys=names, title=f"{axes[key][1]} on {on}", xname=axes[key][0]
                )
                for key, (xs, ys) in curves.items()
            }
        )

    def log_store(self, path: Path, name: str, metadata: Mapping, upload: bool) -> str | None:
        """The feature store as an artifact: the run's input online, a logged output
        offline (see the module docstring). By reference (its files are checksummed, not
        copied) unless ``upload``. Returns the artifact's name."""
        if self.run is None:
            return None
        import wandb

        artifact = wandb.Artifact(name, type="feature-store", metadata=dict(metadata))
        if upload:
            artifact.add_dir(str(path))
        else:
            artifact.add_reference(Path(path).resolve().as_uri())
        if self.offline:
            self.run.log_artifact(artifact)
        else:
            self.run.use_artifact(artifact)
        return name

    def log_extraction(self, stats: Mapping[str, Any]) -> None:
        """Extraction statistics (records, seconds, texts/s, tokens/s, solver counts) in the
        summary as ``extract/<key>``."""
        self.log_summary({f"extract/{k}": v for k, v in stats.items()})

    def log_summary(self, values: Mapping[str, Any]) -> None:
        """Values in the run's summary, under their keys."""
        if self.run is not None:
            self.run.summary.update(dict(values))

    def log_results(self, metrics: Mapping[str, Mapping[str, float]], prefix: str = "test"):
        """``<prefix>/<scorer>/<metric>`` in the summary (``test``: the single split's test
        records; ``cv``: pooled out-of-fold), and one table ``<prefix>/comparison``."""
        if self.run is None:
            return
        import wandb

        flat = {f"{prefix}/{s}/{k}": v for s, row in metrics.items() for k, v in row.items()}
        self.run.summary.update(flat)
        columns = ["scorer"] + [c for m in METRICS for c in (m, f"{m}_lo", f"{m}_hi")]
        table = wandb.Table(columns=columns)
        for scorer, row in metrics.items():
            table.add_data(scorer, *[row.get(c) for c in columns[1:]])
        self.run.log({f"{prefix}/comparison": table})

    def log_table(self, key: str, rows: Sequence[Mapping]) -> None:
        """Rows of one shape (per-fold metrics, nested pairs) as the W&B table ``key``."""
        if self.run is None or not rows:
            return
        import wandb

        columns = list(rows[0])
        table = wandb.Table(columns=columns)
        for r in rows:
            table.add_data(*[r.get(c) for c in columns])
        self.run.log({key: table})

    def log_paired(self, rows: Sequence[Mapping], headline: Mapping | None) -> None:
        """The paired comparisons as a table; the headline as a one-row table and in the
        summary (``headline/diff``, ``headline/lo``, ``headline/hi``, ``headline/p``)."""
        if self.run is None:
            return
        import wandb

        columns = ["scorer", "baseline", "diff", "lo", "hi", "p", "n_undefined"]
        table = wandb.Table(columns=columns)
        for r in rows:
            table.add_data(*[r.get(c) for c in columns])
        self.run.log({"paired": table})
        if headline is not None:
            self.log_table("headline", [{c: headline.get(c) for c in columns}])
            self.run.summary.update(
                {f"headline/{k}": headline[k] for k in ("diff", "lo", "hi", "p")}
                | {"headline/scorer": headline["scorer"], "headline/baseline": headline["baseline"]}
            )

    def log_images(self, paths: Sequence[Path]) -> None:
        if self.run is None:
            return
        import wandb

        self.run.log({f"plots/{Path(p).stem}": wandb.Image(str(p)) for p in paths})

    def log_artifact(
        self,
        path: Path,
        name: str,
        kind: str,
        metadata: Mapping | None = None,
        aliases: Sequence[str] = (),
    ) -> None:
        """A folder (a bundle) as an output artifact, with ``metadata`` and ``aliases``
        (``latest`` is always added)."""
        if self.run is None:
            return
        import wandb

        artifact = wandb.Artifact(name, type=kind, metadata=dict(metadata or {}))
        artifact.add_dir(str(path))
        self.run.log_artifact(artifact, aliases=["latest", *aliases])

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
