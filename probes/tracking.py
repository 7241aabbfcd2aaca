"""Weights & Biases: one run per experiment, grouped by experiment name.

``mode: offline`` (the default) writes everything under the results folder and sends nothing;
``wandb sync <results>/<name>/wandb/offline-run-*`` uploads it later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import WandbConfig
from .metrics import METRICS


class Tracker:
    """A thin wrapper: ``run`` is ``None`` when W&B is disabled, and every call is a no-op."""

    def __init__(self, cfg: WandbConfig, name: str, directory: Path, config: dict[str, Any]):
        self.cfg = cfg
        self.run = None
        if cfg.mode == "disabled":
            return
        import wandb

        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            name=name,
            group=name,
            job_type="calibration",
            mode=cfg.mode,
            dir=str(directory),
            config=config,
            reinit="finish_previous",
        )

    def lightning_logger(self, prefix: str):
        """A ``WandbLogger`` on this run for a LogisticCalibrator's curves (``False`` if off)."""
        if self.run is None:
            return False
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(experiment=self.run, prefix=prefix)

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

    def log_artifact(self, path: Path, name: str, kind: str) -> None:
        if self.run is None:
            return
        import wandb

        artifact = wandb.Artifact(name, type=kind)
        artifact.add_dir(str(path))
        self.run.log_artifact(artifact)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
