"""Extraction as a Lightning ``predict`` loop: records -> frozen LM -> FeatureStore.

``Trainer(strategy="ddp", devices=N, num_nodes=M)`` spreads records over processes with
Lightning's own DDP; each rank writes its own shards. A rerun after an interruption extracts
only the records that no shard holds yet.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, TQDMProgressBar

from .capture import SpectralCapture
from .config import ExtractConfig
from .data.datamodule import TextDataModule, TextItem
from .data.records import Record
from .data.sources import load_records
from .data.splits import check_splits
from .devices import process_device, processes_per_node, trainer_placement
from .eigen import ACCURACY
from .errors import ConfigError
from .models import load_frozen
from .steps import step_labels
from .store import (
    SOLVER_COUNTS,
    FeatureStore,
    fingerprint,
    is_rank_zero,
    new_run_tag,
    store_key,
    store_lock,
)


class ExtractionModule(L.LightningModule):
    """Wraps a :class:`SpectralCapture`; ``predict_step`` returns one feature row per item.

    The frozen model is deliberately not a submodule: :func:`probes.models.load_frozen` put
    it on this process's device (or spread it over the GPUs with a ``device_map``), and
    Lightning's own move would undo a device map and is the second device setting that once
    ran a ``model.device: cuda`` model on the CPU."""

    def __init__(self, capture: SpectralCapture):
        super().__init__()
        self.capture = capture

    def predict_step(self, batch: list[TextItem], batch_idx: int) -> dict[str, Any]:
        """``values`` ``(B, F)`` and ``steps``, ``B`` step tables ``(S_b, Fs)``."""
        values, steps = self.capture.features_of([item.tokens for item in batch])
        return {"values": values, "steps": steps}


class PendingDataModule(TextDataModule):
    """A :class:`TextDataModule` whose predict set leaves out records already in the store.

    The done set is read in ``setup``, which every rank runs after Lightning's pre-setup
    barrier and before any rank writes, so all ranks agree on it.
    """

    def __init__(self, *args, store: FeatureStore, **kwargs):
        super().__init__(*args, **kwargs)
        self.store = store
        self.pending: list[TextItem] = []
        self.n_done = 0

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        done = self.store.done_ids()
        everything = self.split("all")
        self.pending = [it for it in everything if it.record.id not in done]
        self.n_done = len(everything) - len(self.pending)

    def predict_dataloader(self):
        return self._loader(sorted(self.pending, key=lambda it: -len(it.tokens.ids)))


class StoreWriter(BasePredictionWriter):
    """Buffers feature rows per rank and writes a shard every ``shard_size`` records."""

    def __init__(self, store: FeatureStore, shard_size: int = 256, run: str | None = None):
        super().__init__(write_interval="batch")
        self.store, self.shard_size = store, shard_size
        self.run = run or new_run_tag()
        self._rows: list[torch.Tensor] = []
        self._steps: list[torch.Tensor] = []
        self._items: list[TextItem] = []
        self._seq = 0
        self.stats = {"records": 0, "tokens": 0, "skipped": 0, "truncated": 0}
        self.stats |= dict.fromkeys(SOLVER_COUNTS, 0)
        self._start = time.perf_counter()

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ):
        self._rows.append(prediction["values"].cpu())
        self._steps.extend(rows.cpu() for rows in prediction["steps"])
        self._items.extend(batch)
        self.stats.update(pl_module.capture.solver_counts)  # this rank's totals so far
        for item in batch:
            self.stats["records"] += 1
            self.stats["tokens"] += len(item.tokens.ids)
            self.stats["skipped"] += int(item.tokens.skipped)
            self.stats["truncated"] += int(item.tokens.truncated)
        if len(self._items) >= self.shard_size:
            self.flush(trainer.global_rank)

    def on_predict_end(self, trainer, pl_module) -> None:
        self.flush(trainer.global_rank)

    def flush(self, rank: int) -> None:
        if not self._items:
            return
        items = self._items
        rows = {
            "values": torch.cat(self._rows).double(),
            "n_tokens": torch.tensor([len(it.tokens.ids) for it in items], dtype=torch.long),
            "truncated": torch.tensor([it.tokens.truncated for it in items]),
            "skipped": torch.tensor([it.tokens.skipped for it in items]),
        }
        index = {
            "ids": [it.record.id for it in items],
            "labels": [it.record.label for it in items],
            "groups": [it.record.group for it in items],
            "splits": [it.split for it in items],
        }
        if self.store.step_names:
            rows |= step_rows(items, self._steps)
        self.store.write_shard(self.run, rank, self._seq, rows, index)
        self._seq += 1
        self._rows, self._steps, self._items = [], [], []

    def throughput(self) -> dict[str, str]:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        return {
            "texts_s": f"{self.stats['records'] / elapsed:.2f}",
            "tokens_s": f"{self.stats['tokens'] / elapsed:.0f}",
        }


def step_rows(items: Sequence[TextItem], tables: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The shard's step table (``probes.store.STEP_KEYS``) of ``n`` records' step tables
    ``(S_i, Fs)``: ``step_values`` ``(M, Fs)``, ``step_record`` ``(M,)`` (the record's row in
    the shard), ``step_spans`` ``(M, 4)`` (:class:`probes.steps.StepSpan`) and
    ``step_labels`` ``(M,)`` (:func:`probes.steps.step_labels`)."""
    spans = [list(it.tokens.steps) for it in items]
    return {
        "step_values": torch.cat([t.double() for t in tables]),
        "step_record": torch.tensor(
            [row for row, s in enumerate(spans) for _ in s], dtype=torch.long
        ),
        "step_spans": torch.tensor([list(x) for s in spans for x in s], dtype=torch.long).view(
            -1, 4
        ),
        "step_labels": torch.tensor(
            [y for it, s in zip(items, spans, strict=True) for y in step_labels(it.record, s)],
            dtype=torch.long,
        ),
    }


class ThroughputBar(TQDMProgressBar):
    """Lightning's progress bar, with texts/s and tokens/s of this rank."""

    def __init__(self, writer: StoreWriter):
        super().__init__()
        self.writer = writer

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self.predict_progress_bar.set_postfix(self.writer.throughput())


@dataclass
class ExtractResult:
    """What one extraction run did."""

    store: FeatureStore
    total: int
    extracted: int
    already_present: int
    skipped: int
    truncated: int
    seconds: float
    is_global_zero: bool = True
    #: This run's graphs, and how their spectra's ends were solved (``probes.eigen``).
    solver: dict[str, int] = field(default_factory=dict)
    #: Tokens read by this run.
    tokens: int = 0

    def stats(self) -> dict[str, float]:
        """This run's numbers, for tracking: records, seconds, texts/s, tokens/s, solver
        counts."""
        rate = lambda n: n / self.seconds if self.seconds > 0 else 0.0  # noqa: E731
        return {
            "records": self.total,
            "extracted": self.extracted,
            "already_present": self.already_present,
            "skipped": self.skipped,
            "truncated": self.truncated,
            "seconds": self.seconds,
            "texts_per_s": rate(self.extracted),
            "tokens_per_s": rate(self.tokens),
            **{f"solver/{k}": v for k, v in self.solver.items()},
        }

    def summary(self) -> str:
        """What was done, then the store's records per split with their class balance."""
        rate = self.extracted / self.seconds if self.seconds > 0 else float("nan")
        data = self.store.read()
        families = sorted({n.split("/")[0] for n in data.names})
        lines = [
            f"store {self.store.path}: {self.total} records ({self.already_present} already "
            f"present, {self.extracted} extracted now, {self.skipped} skipped as too long, "
            f"{self.truncated} truncated) in {self.seconds:.1f} s ({rate:.2f} texts/s)",
            f"{len(data.names)} features per record; families: {', '.join(families)}",
        ]
        if data.steps is not None:
            t = data.steps
            read = int((t.spans[:, 3] > t.spans[:, 2]).sum())
            lines.append(
                f"step table: {len(t.labels)} steps ({read} read, the others cut off by "
                f"truncation), {len(t.names)} features per step; {int((t.labels == 1).sum())} "
                "labelled first wrong steps"
            )
        if self.solver.get("graphs"):
            s = self.solver
            lines.append(
                f"spectra: {s['graphs']} graphs; {s['refined']} spectrum ends certified by "
                f"mixed-precision refinement, {s['fallbacks']} solved densely after failing "
                f"the certificate (every feature within {ACCURACY:g} of dense float64)"
            )
        for split in ("train", "calib", "test"):
            rows = [i for i, s in enumerate(data.splits) if s == split and not data.skipped[i]]
            valid = int(data.labels[rows].sum()) if rows else 0
            lines.append(f"  {split:5s} {len(rows):5d} records, {valid} valid")
        return "\n".join(lines)


def dataset_fingerprint(records: Sequence[Record], fractions: Sequence[float], seed: int) -> str:
    """What determines a store's rows: every record's id, text, label, group, and the split
    inputs (fractions, seed)."""
    rows = sorted((r.id, r.full_text, r.solution_start or 0, r.label, r.group) for r in records)
    return fingerprint({"records": rows, "fractions": list(fractions), "seed": seed})


def extract(
    cfg: ExtractConfig,
    records: Sequence[Record] | None = None,
    repair: bool = False,
    **trainer_kwargs: Any,
) -> ExtractResult:
    """Extract ``cfg.data`` with ``cfg.model`` under ``cfg.capture`` into a feature store.

    The records are checked (not empty, every split non-empty) before the model loads. The
    store is locked for the whole run: a second extraction on it waits.

    Args:
        cfg: the extraction config.
        records: records to use instead of loading ``cfg.data.source``.
        repair: first set damaged, foreign and duplicated shards aside (``quarantine/``)
            and add checksums to older shards; their records are then re-extracted.
        **trainer_kwargs: overrides for ``lightning.Trainer`` (``devices``, ``strategy``...).
    """
    start = time.perf_counter()
    if records is None:
        records = load_records(cfg.data.source, cfg.data.mapping)
    check_splits(records, cfg.data.fractions, cfg.data.seed, source=str(cfg.data.source))
    if cfg.capture.span == "solution":
        for r in records:
            r.span_start("solution")  # a text without a solution span is named now
    processes = processes_per_node(cfg.model.device, cfg.trainer.devices)
    if cfg.model.device_map and (processes > 1 or cfg.trainer.num_nodes > 1):
        raise ConfigError(
            "option 'model.device_map' spreads one model over the GPUs of one process; with "
            f"{processes} processes per node and {cfg.trainer.num_nodes} node(s) each process "
            "holds its own copy: set trainer.devices: 1 and trainer.num_nodes: 1, or "
            "model.device_map: null"
        )
    device = process_device(cfg.model.device, processes)
    lm = load_frozen(cfg.model, device=str(device))
    capture = SpectralCapture(lm, cfg.capture)
    dataset = dataset_fingerprint(records, cfg.data.fractions, cfg.data.seed)
    manifest = {
        "model": lm.identity,
        "capture": cfg.capture.identity(),
        "dataset": dataset,
        "feature_names": capture.names,
    }
    if capture.step_names:
        manifest["step_feature_names"] = capture.step_names
    path = Path(cfg.store) if cfg.store else default_store_path(cfg, manifest)
    placement = trainer_placement(device, processes)
    with store_lock(path):
        return _extract_locked(
            cfg, records, capture, manifest, path, repair, start, {**placement, **trainer_kwargs}
        )


def _extract_locked(cfg, records, capture, manifest, path, repair, start, trainer_kwargs):
    store = FeatureStore(path, manifest)
    # Rank 0 repairs (under the lock): Lightning starts the other ranks afterwards.
    repair_report = store.repair() if repair and is_rank_zero() else None
    if repair_report is not None:
        print(repair_report.summary())
    dm = PendingDataModule(
        records,
        capture.lm.tokenizer,
        tokenization=capture.lm.identity["tokenization"],
        store=store,
        max_tokens=capture.max_tokens,
        overflow=cfg.capture.overflow,
        span=cfg.capture.span,
        steps=cfg.capture.steps,
        fractions=cfg.data.fractions,
        seed=cfg.data.seed,
        split_file=store.path / "splits.json",
        batch_size=cfg.batch_size,
    )
    writer = StoreWriter(store, cfg.shard_size)
    kwargs = {
        "num_nodes": cfg.trainer.num_nodes,
        "strategy": cfg.trainer.strategy,
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "callbacks": [writer, ThroughputBar(writer)],
        **trainer_kwargs,
    }
    trainer = L.Trainer(**kwargs)
    if not {r.id for r in records} <= store.done_ids():
        trainer.predict(ExtractionModule(capture), datamodule=dm, return_predictions=False)
    else:
        dm.setup("predict")  # nothing to do: count what is there
    if trainer.world_size > 1:
        trainer.strategy.barrier("probes-extract-end")  # every rank's last shard is on disk
    stats = _gather(trainer, writer.stats)
    if trainer.is_global_zero:
        store.write_index()
        store.add_solver_counts(stats, ACCURACY)
    return ExtractResult(
        store=store,
        total=len(records),
        extracted=stats["records"],
        already_present=dm.n_done,
        skipped=stats["skipped"],
        truncated=stats["truncated"],
        seconds=time.perf_counter() - start,
        is_global_zero=trainer.is_global_zero,
        solver={k: stats[k] for k in SOLVER_COUNTS},
        tokens=stats["tokens"],
    )


def default_store_path(cfg: ExtractConfig, manifest: dict) -> Path:
    name = Path(str(cfg.data.source)).stem or "records"
    key = store_key(manifest["model"], manifest["capture"], manifest["dataset"])
    return Path(cfg.stores_dir) / f"{name}-{key}"


def _gather(trainer: L.Trainer, stats: dict[str, int]) -> dict[str, int]:
    """Sum per-rank counters (a no-op in one process)."""
    if trainer.world_size == 1:
        return stats
    keys = sorted(stats)
    local = torch.tensor([stats[k] for k in keys], dtype=torch.long)
    total = trainer.strategy.reduce(local, reduce_op="sum")
    return {k: int(v) for k, v in zip(keys, total.tolist(), strict=True)}
