"""``FeatureDataModule``: a feature store served as ``X (N, F)``, ``y (N,)``, groups and
feature names per split, with feature subsets chosen by name patterns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from .data.splits import SPLITS
from .errors import ConfigError
from .store import FeatureStore


def matches(name: str, pattern: str) -> bool:
    """``pattern`` matches ``name`` or one of its leading parts: ``*/L1[0-9]`` selects
    ``fiedler/L12`` and ``lapeig/L12/k0``; ``fiedler/*`` selects every Fiedler feature."""
    parts = name.split("/")
    return any(fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def select_features(names: Sequence[str], patterns: Sequence[str] | None) -> list[int]:
    """Column indices of ``names`` matched by any pattern and by no ``!pattern`` (all names
    when there is no positive pattern); a positive pattern that matches nothing raises.

    Example:
        >>> select_features(["fiedler/L00", "confound/n_tokens"], ["*", "!confound/*"])
        [0]
    """
    patterns = list(patterns or [])
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    for p in include:
        if not any(matches(n, p) for n in names):
            raise ConfigError(f"option 'select': pattern {p!r} matches no feature in the store")
    chosen = [
        i
        for i, n in enumerate(names)
        if (not include or any(matches(n, p) for p in include))
        and not any(matches(n, p) for p in exclude)
    ]
    if not chosen:
        raise ConfigError(f"option 'select': {patterns} leaves no feature")
    return chosen


@dataclass
class SplitArrays:
    """One split: ``X (N, F)`` float64, ``y (N,)`` long, ``groups`` and ``ids`` of length N."""

    X: torch.Tensor
    y: torch.Tensor
    groups: list[str]
    ids: list[str]


class FeatureDataModule(L.LightningDataModule):
    """Serves a store's features per split; skipped records are left out (and counted).

    Args:
        store: a :class:`FeatureStore` or its folder.
        select: name patterns (``fiedler/*``, ``*/L1[0-9]``); default every feature.
        batch_size: rows per batch for Lightning training.
    """

    def __init__(
        self,
        store: FeatureStore | str | Path,
        select: Sequence[str] | None = None,
        batch_size: int = 256,
    ):
        super().__init__()
        self.store = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
        self.select = list(select or [])
        self.batch_size = batch_size
        self.names: list[str] = []
        self.n_skipped = 0
        self._splits: dict[str, SplitArrays] = {}

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        data = self.store.read()
        cols = select_features(data.names, self.select)
        self.names = [data.names[i] for i in cols]
        keep = ~data.skipped
        self.n_skipped = int(data.skipped.sum())
        for split in SPLITS:
            rows = [i for i, s in enumerate(data.splits) if s == split and bool(keep[i])]
            self._splits[split] = SplitArrays(
                X=data.values[rows][:, cols],
                y=data.labels[rows],
                groups=[data.groups[i] for i in rows],
                ids=[data.ids[i] for i in rows],
            )

    def arrays(self, split: str) -> SplitArrays:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        self.setup()
        return self._splits[split]

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        a = self.arrays(split)
        dataset = TensorDataset(a.X.float(), a.y.float())
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("calib")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
