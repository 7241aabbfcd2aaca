"""FeatureStore: extracted features on disk, sharded, resumable, safe to share.

A store is a folder::

    manifest.json                    model identity, capture config, dataset fingerprint,
                                     feature names, format version
    shards/<run>-r<rank>-<seq>.safetensors
                                     values (n, F) float64, n_tokens (n,), truncated (n,),
                                     skipped (n,); metadata: ids, labels, groups, splits (JSON);
                                     with per-step features, the step table of the same
                                     records: step_values (M, Fs) float64, step_record (M,)
                                     (the record's row), step_spans (M, 4), step_labels (M,)
    index.json                       the merged index, rewritten after each extraction
    quarantine/                      shards set aside by ``--repair`` (never deleted)
    .lock                            held by the extraction that writes the store

Each shard is written to a temporary file and renamed into place, so a shard either exists
whole or not at all (with both tables: a record's steps are never stored without it): after
Ctrl-C or ``kill -9`` a rerun extracts only the records that no shard holds. Ranks of a
distributed run write their own shards; reading merges them.

Each shard carries, in its header, the sha256 of its tensors (names, dtypes, shapes, bytes)
and of its index entries (ids, labels, groups, splits); every read recomputes it. A damaged,
truncated or foreign file, or a record held by two shards, raises a :class:`StoreError` that
names the file and the command that repairs the store: ``probes extract --repair`` moves
such shards to ``quarantine/`` and re-extracts only their records. Shards written before
checksums existed are read as they are; ``--repair`` adds their checksums.

One extraction at a time writes a store: :func:`store_lock` holds ``.lock`` (a
``filelock`` lock, released by the OS if the process dies); a second one waits for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .atomic import atomic_path, atomic_write_text
from .errors import ConfigError, StoreError

FORMAT_VERSION = 1
INDEX_KEYS = ("ids", "labels", "groups", "splits")
TENSOR_KEYS = ("values", "n_tokens", "truncated", "skipped")
#: The step table's tensors, in stores with per-step features (``step_feature_names``).
STEP_KEYS = ("step_values", "step_record", "step_spans", "step_labels")


class StoreMismatchError(ConfigError):
    """The store on disk was made with another model, capture config or dataset."""


def shard_checksum(tensors: dict[str, torch.Tensor], index: dict[str, str]) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes) and the JSON index entries."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    for key in sorted(index):
        h.update(f"{key}|{index[key]}|".encode())
    return h.hexdigest()


@dataclass
class Shard:
    """One shard as read and verified: its index entries and tensors."""

    path: Path
    meta: dict[str, list]
    tensors: dict[str, torch.Tensor]
    has_checksum: bool


@dataclass
class RepairReport:
    """What ``FeatureStore.repair`` did; every moved file is in ``quarantine/``."""

    damaged: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    checksummed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not (self.damaged or self.duplicates or self.checksummed):
            return "repair: every shard is whole; nothing to do"
        parts = []
        if self.damaged:
            parts.append(f"{len(self.damaged)} damaged or foreign file(s) set aside")
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} shard(s) repeating records set aside")
        if self.checksummed:
            parts.append(f"{len(self.checksummed)} older shard(s) given checksums")
        return "repair: " + "; ".join(parts) + " (set-aside files are in quarantine/)"


def fingerprint(payload: Any) -> str:
    """sha256 of a JSON-serialisable payload (sorted keys)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def store_key(model: dict, capture: dict, dataset: str) -> str:
    """The key that names a store: a hash of what determines its features."""
    return fingerprint({"model": model, "capture": capture, "dataset": dataset})[:16]


@dataclass
class StoredFeatures:
    """Everything a store holds, merged over shards, in index order (sorted by record id)."""

    ids: list[str]
    names: list[str]
    values: torch.Tensor  # (N, F) float64
    labels: torch.Tensor  # (N,) long
    groups: list[str]
    splits: list[str]
    n_tokens: torch.Tensor  # (N,) long
    truncated: torch.Tensor  # (N,) bool
    skipped: torch.Tensor  # (N,) bool
    steps: StepTable | None = None  # per-step features, when the store has them


@dataclass
class StepTable:
    """The per-step table of a store: ``M`` steps, keyed by record and step, sorted by record
    id (as :class:`StoredFeatures`) and step.

    Attributes:
        record: ``(M,)`` long, the step's record as a row of :class:`StoredFeatures`.
        step: ``(M,)`` long, the step's index in its solution.
        spans: ``(M, 4)`` long: characters ``start, end`` of the solution, tokens
            ``first, stop`` of the analysed span (``stop <= first``: not read).
        labels: ``(M,)`` long, :func:`probes.steps.step_labels` (1 wrong, 0 correct, -1
            unknown).
        values: ``(M, Fs)`` float64.
    """

    names: list[str]
    record: torch.Tensor
    step: torch.Tensor
    spans: torch.Tensor
    labels: torch.Tensor
    values: torch.Tensor


#: What ``manifest.json``'s ``solver`` entry counts, over every extraction run of a store.
SOLVER_COUNTS = ("graphs", "refined", "fallbacks")


class FeatureStore:
    """A feature store folder (see the module docstring).

    Args:
        path: the folder.
        manifest: what the store must hold (``model``, ``capture``, ``dataset``,
            ``feature_names``). A new folder gets it; an existing one must match it, or
            :class:`StoreMismatchError` says which entries differ.
    """

    def __init__(self, path: str | Path, manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = {"format_version": FORMAT_VERSION, **manifest}
        self._warned_legacy = False
        existing = self.path / "manifest.json"
        if existing.exists():
            try:
                on_disk = json.loads(existing.read_text())
            except json.JSONDecodeError as err:
                raise StoreError(f"{existing}: not valid JSON ({err})") from None
            # ``solver`` is what extraction runs have counted so far, not part of the identity.
            identity = {k: v for k, v in self.manifest.items() if k != "solver"}
            diff = _diff({k: v for k, v in on_disk.items() if k != "solver"}, identity)
            if diff:
                raise StoreMismatchError(
                    f"the feature store {self.path} was made with other settings; "
                    f"differences (stored -> requested): {'; '.join(diff)}. Use another "
                    "--store folder, or delete this one to re-extract"
                )
            if "solver" in on_disk:
                self.manifest["solver"] = on_disk["solver"]
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(existing, json.dumps(self.manifest, indent=1, sort_keys=True))
        (self.path / "shards").mkdir(exist_ok=True)

    @classmethod
    def open(cls, path: str | Path) -> FeatureStore:
        """Open an existing store as it is (no settings to compare)."""
        manifest = Path(path) / "manifest.json"
        if not manifest.is_file():
            raise StoreError(f"{path} is not a feature store (no manifest.json)")
        try:
            data = json.loads(manifest.read_text())
        except json.JSONDecodeError as err:
            raise StoreError(f"{manifest}: not valid JSON ({err})") from None
        data.pop("format_version", None)
        return cls(path, data)

    @property
    def names(self) -> list[str]:
        return list(self.manifest["feature_names"])

    @property
    def step_names(self) -> list[str]:
        """Per-step feature names; empty for a store without per-step features."""
        return list(self.manifest.get("step_feature_names", []))

    def _tensor_keys(self) -> set[str]:
        return set(TENSOR_KEYS) | (set(STEP_KEYS) if self.step_names else set())

    def shard_paths(self) -> list[Path]:
        return sorted((self.path / "shards").glob("*.safetensors"))

    def done_ids(self) -> set[str]:
        """Record ids already in some shard (every shard verified)."""
        return {rid for shard in self.shards() for rid in shard.meta["ids"]}

    def write_shard(
        self,
        run: str,
        rank: int,
        seq: int,
        rows: dict[str, torch.Tensor],
        index: dict[str, Sequence],
    ) -> Path:
        """Write one shard atomically.

        Args:
            run, rank, seq: name parts (``<run>-r<rank>-<seq>``), unique per writer.
            rows: ``values (n, F)``, ``n_tokens``, ``truncated``, ``skipped`` ``(n,)``.
            index: ``ids``, ``labels``, ``groups``, ``splits`` lists of length ``n``.
        """
        if rows["values"].shape[1] != len(self.names):
            raise StoreError(
                f"shard has {rows['values'].shape[1]} features, store has {len(self.names)}"
            )
        if set(rows) != self._tensor_keys():
            raise StoreError(
                f"shard tensors {sorted(rows)}, store needs {sorted(self._tensor_keys())}"
            )
        final = self.path / "shards" / f"{run}-r{rank:03d}-{seq:05d}.safetensors"
        if final.exists():  # never replace a shard: its records would be lost
            raise StoreError(f"{final}: a shard of this name exists already")
        tensors = {k: v.contiguous() for k, v in rows.items()}
        self._save(final, tensors, {k: json.dumps(list(v)) for k, v in index.items()})
        return final

    @staticmethod
    def _save(path: Path, tensors: dict[str, torch.Tensor], index: dict[str, str]) -> None:
        metadata = {**index, "sha256": shard_checksum(tensors, index)}
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=metadata)

    def repair_hint(self) -> str:
        return (
            f"run `probes extract --repair store={self.path}` with the same config to set "
            "the damaged shards aside and re-extract only their records"
        )

    def read_shard(self, path: Path) -> Shard:
        """Read one shard and verify it; anything wrong raises :class:`StoreError` naming
        the file and the repair command."""

        def bad(problem: str) -> StoreError:
            return StoreError(f"{path}: {problem}; {self.repair_hint()}")

        try:
            with safe_open(path, framework="pt") as f:
                raw = f.metadata()
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as err:  # safetensors raises its own types for truncated files
            raise bad(f"damaged shard, cannot be read ({err})") from None
        if not raw or not set(INDEX_KEYS) <= set(raw) or set(tensors) != self._tensor_keys():
            raise bad("not a shard of this store (foreign file: no shard index or tensors)")
        index = {k: raw[k] for k in INDEX_KEYS}
        has_checksum = "sha256" in raw
        if has_checksum and shard_checksum(tensors, index) != raw["sha256"]:
            raise bad("damaged shard (sha256 of its tensors and index does not match)")
        try:
            meta = {k: json.loads(v) for k, v in index.items()}
        except json.JSONDecodeError:
            raise bad("damaged shard (its index is not JSON)") from None
        n = len(meta["ids"])
        lengths = [len(v) for v in meta.values()] + [len(tensors[k]) for k in TENSOR_KEYS]
        if any(m != n for m in lengths) or tensors["values"].shape[1:] != (len(self.names),):
            raise bad("damaged shard (index and tensors disagree in length or width)")
        if self.step_names and not _steps_agree(tensors, n, len(self.step_names)):
            raise bad("damaged shard (its step table disagrees with its records)")
        return Shard(path, meta, tensors, has_checksum)

    def shards(self) -> list[Shard]:
        """Every shard, verified; a record in two shards raises."""
        out, where = [], {}
        for path in self.shard_paths():
            shard = self.read_shard(path)
            for rid in shard.meta["ids"]:
                if rid in where:
                    raise StoreError(
                        f"{self.path}: record {rid!r} is in two shards, {where[rid]} and "
                        f"{path.name} (two extractions ran at once on an older version); "
                        f"{self.repair_hint()}"
                    )
                where[rid] = path.name
            out.append(shard)
        legacy = [s.path.name for s in out if not s.has_checksum]
        if legacy and not self._warned_legacy:
            self._warned_legacy = True
            print(
                f"probes: {len(legacy)} shard(s) of {self.path} predate checksums and are "
                "read unverified; `probes extract --repair` adds their checksums",
                file=sys.stderr,
            )
        return out

    def repair(self) -> RepairReport:
        """Set aside (into ``quarantine/``) every damaged or foreign file and every shard
        that repeats records of an earlier one; add checksums to older shards. The records
        of set-aside shards are then missing, and the next extraction fills them in."""
        report, seen = RepairReport(), set()
        quarantine = self.path / "quarantine"
        for path in self.shard_paths():
            try:
                shard = self.read_shard(path)
            except StoreError:
                quarantine.mkdir(exist_ok=True)
                shutil.move(path, quarantine / path.name)
                report.damaged.append(path.name)
                continue
            ids = set(shard.meta["ids"])
            if ids & seen:
                quarantine.mkdir(exist_ok=True)
                shutil.move(path, quarantine / path.name)
                report.duplicates.append(path.name)
                continue
            seen |= ids
            if not shard.has_checksum:
                index = {k: json.dumps(shard.meta[k]) for k in INDEX_KEYS}
                self._save(path, shard.tensors, index)
                report.checksummed.append(path.name)
        return report

    def read(self) -> StoredFeatures:
        """Merge every shard (verified), sorted by record id."""
        parts = [(shard.meta, shard.tensors) for shard in self.shards()]
        ids = [rid for meta, _ in parts for rid in meta["ids"]]
        order = sorted(range(len(ids)), key=ids.__getitem__)
        F = len(self.names)

        def cat(key: str, empty: torch.Tensor) -> torch.Tensor:
            if not parts:
                return empty
            return torch.cat([t[key] for _, t in parts])[order]

        def lst(key: str) -> list:
            flat = [x for meta, _ in parts for x in meta[key]]
            return [flat[i] for i in order]

        steps = None
        if self.step_names:
            steps = self._read_steps(
                [t for _, t in parts], [len(m["ids"]) for m, _ in parts], order
            )
        return StoredFeatures(
            ids=[ids[i] for i in order],
            names=self.names,
            values=cat("values", torch.empty(0, F, dtype=torch.float64)),
            labels=torch.tensor(lst("labels"), dtype=torch.long),
            groups=lst("groups"),
            splits=lst("splits"),
            n_tokens=cat("n_tokens", torch.empty(0, dtype=torch.long)),
            truncated=cat("truncated", torch.empty(0, dtype=torch.bool)),
            skipped=cat("skipped", torch.empty(0, dtype=torch.bool)),
            steps=steps,
        )

    def _read_steps(self, tensors: list[dict], sizes: list[int], order: list[int]) -> StepTable:
        """Merge the shards' step tables, re-keyed to the merged records' rows."""
        rank = torch.empty(len(order), dtype=torch.long)
        rank[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        offsets = torch.tensor([0, *sizes]).cumsum(0)
        if tensors:
            record = torch.cat([t["step_record"] + offsets[i] for i, t in enumerate(tensors)])
            record = rank[record]
            cat = {k: torch.cat([t[k] for t in tensors]) for k in STEP_KEYS}
        else:
            record = torch.empty(0, dtype=torch.long)
            cat = {
                "step_values": torch.empty(0, len(self.step_names), dtype=torch.float64),
                "step_spans": torch.empty(0, 4, dtype=torch.long),
                "step_labels": torch.empty(0, dtype=torch.long),
            }
        # Steps of one record are contiguous and in order within its shard: a stable sort
        # by record keeps that order.
        by = torch.sort(record, stable=True).indices
        record = record[by]
        first = torch.searchsorted(record, record, right=False)
        return StepTable(
            names=self.step_names,
            record=record,
            step=torch.arange(len(record)) - first,
            spans=cat["step_spans"][by],
            labels=cat["step_labels"][by],
            values=cat["step_values"][by],
        )

    def add_solver_counts(self, counts: dict[str, int], accuracy: float) -> dict[str, Any]:
        """Add one extraction run's eigensolver counts (``graphs``, ``refined``,
        ``fallbacks``) to the manifest's ``solver`` entry, with the stated accuracy of the
        spectral features; returns the totals. Rank 0 only, under the store's lock, once a
        run has finished: the graphs of a run killed before its end are not counted, though
        the shards it wrote stay."""
        before = self.manifest.get("solver") or {}
        totals = {k: int(before.get(k, 0)) + int(counts.get(k, 0)) for k in SOLVER_COUNTS}
        self.manifest["solver"] = {**totals, "accuracy": accuracy}
        text = json.dumps(self.manifest, indent=1, sort_keys=True)
        atomic_write_text(self.path / "manifest.json", text)
        return self.manifest["solver"]

    def write_index(self) -> Path:
        """``index.json``: one entry per record (id, label, group, split, n_tokens, flags)."""
        data = self.read()
        rows = [
            {
                "id": rid,
                "label": int(data.labels[i]),
                "group": data.groups[i],
                "split": data.splits[i],
                "n_tokens": int(data.n_tokens[i]),
                "truncated": bool(data.truncated[i]),
                "skipped": bool(data.skipped[i]),
            }
            for i, rid in enumerate(data.ids)
        ]
        path = self.path / "index.json"
        atomic_write_text(path, json.dumps(rows, indent=0))
        return path


def _steps_agree(tensors: dict[str, torch.Tensor], n: int, width: int) -> bool:
    """The step table's tensors agree in length, width and record rows ``[0, n)``."""
    record = tensors["step_record"]
    M = len(record)
    return (
        tensors["step_values"].shape == (M, width)
        and tensors["step_spans"].shape == (M, 4)
        and tensors["step_labels"].shape == (M,)
        and bool(((record >= 0) & (record < n)).all())
        and bool((record[1:] >= record[:-1]).all())
    )


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of its run, from the variables that torchrun, SLURM
    and Lightning's launcher set (none set: one process, rank 0)."""
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return int(os.environ[name]) == 0
    local = int(os.environ.get("LOCAL_RANK", 0))
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
    return local == 0 and node == 0


@contextlib.contextmanager
def store_lock(path: str | Path, timeout: float = -1) -> Iterator[None]:
    """Hold ``<store>/.lock`` for the block, so one extraction writes a store at a time.

    Only rank 0 of a distributed run takes it: the other ranks are that run's own workers.
    A second extraction waits (``timeout`` seconds, -1 for as long as it takes) and says so.
    """
    if not is_rank_zero():
        yield
        return
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path / ".lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        print(
            f"probes: another extraction is writing {path}; waiting for it to finish",
            file=sys.stderr,
        )
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout:
            raise StoreError(
                f"{path}: another extraction still holds {path / '.lock'} after {timeout} s"
            ) from None
    try:
        yield
    finally:
        lock.release()


def new_run_tag() -> str:
    """A shard-name prefix unique to one extraction run: time, pid and a random part (two
    runs of one process within a second once shared a name, and a shard replaced another)."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}"


def _diff(stored: dict, requested: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(stored) | set(requested)):
        a, b = stored.get(key), requested.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, name + ".")
        elif a != b:
            if key == "feature_names":
                out.append(f"{name}: {len(a or [])} -> {len(b or [])} names")
            else:
                out.append(f"{name}: {a!r} -> {b!r}")
    return out
