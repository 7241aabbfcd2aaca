"""FeatureStore: extracted features on disk, sharded, resumable, safe to share.

A store is a folder::

    manifest.json                    model identity, capture config, dataset fingerprint,
                                     feature names, format version
    shards/<run>-r<rank>-<seq>.safetensors
                                     values (n, F) float64, n_tokens (n,), truncated (n,),
                                     skipped (n,); metadata: ids, labels, groups, splits (JSON)
    index.json                       the merged index, rewritten after each extraction

Each shard is written to a temporary file and renamed into place, so a shard either exists
whole or not at all: after Ctrl-C or ``kill -9`` a rerun extracts only the records that no
shard holds. Ranks of a distributed run write their own shards; reading merges them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .atomic import atomic_path, atomic_write_text
from .config import ConfigError

FORMAT_VERSION = 1


class StoreMismatchError(ConfigError):
    """The store on disk was made with another model, capture config or dataset."""


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
        existing = self.path / "manifest.json"
        if existing.exists():
            on_disk = json.loads(existing.read_text())
            diff = _diff(on_disk, self.manifest)
            if diff:
                raise StoreMismatchError(
                    f"the feature store {self.path} was made with other settings; "
                    f"differences (stored -> requested): {'; '.join(diff)}. Use another "
                    "--store folder, or delete this one to re-extract"
                )
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(existing, json.dumps(self.manifest, indent=1, sort_keys=True))
        (self.path / "shards").mkdir(exist_ok=True)

    @classmethod
    def open(cls, path: str | Path) -> FeatureStore:
        """Open an existing store as it is (no settings to compare)."""
        manifest = Path(path) / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"{path} is not a feature store (no manifest.json)")
        data = json.loads(manifest.read_text())
        data.pop("format_version", None)
        return cls(path, data)

    @property
    def names(self) -> list[str]:
        return list(self.manifest["feature_names"])

    def shard_paths(self) -> list[Path]:
        return sorted((self.path / "shards").glob("*.safetensors"))

    def done_ids(self) -> set[str]:
        """Record ids already in some shard (reads shard headers only)."""
        done: set[str] = set()
        for path in self.shard_paths():
            with safe_open(path, framework="pt") as f:
                done.update(json.loads(f.metadata()["ids"]))
        return done

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
            raise ValueError(
                f"shard has {rows['values'].shape[1]} features, store has {len(self.names)}"
            )
        final = self.path / "shards" / f"{run}-r{rank:03d}-{seq:05d}.safetensors"
        tensors = {k: v.contiguous() for k, v in rows.items()}
        with atomic_path(final) as tmp:
            save_file(tensors, tmp, metadata={k: json.dumps(list(v)) for k, v in index.items()})
        return final

    def read(self) -> StoredFeatures:
        """Merge every shard, sorted by record id; a record in two shards is an error."""
        parts, where = [], {}
        for path in self.shard_paths():
            with safe_open(path, framework="pt") as f:
                meta = {k: json.loads(v) for k, v in f.metadata().items()}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            for rid in meta["ids"]:
                if rid in where:
                    raise ValueError(
                        f"record {rid!r} is in two shards: {where[rid]} and {path.name}"
                    )
                where[rid] = path.name
            parts.append((meta, tensors))
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
        )

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


def new_run_tag() -> str:
    """A shard-name prefix unique to one extraction run (time + pid)."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"


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
