"""``TextDataModule``: records -> tokenized, grouped and stratified train / calib / test."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from ..tokens import Tokenized, tokenize_records
from .records import Record
from .sources import load_records
from .splits import SPLITS, assign_splits, load_splits, save_splits


@dataclass(frozen=True)
class TextItem:
    """One record ready for the capture: its tokens, label, group and split."""

    record: Record
    tokens: Tokenized
    split: str


def collate_items(items: list[TextItem]) -> list[TextItem]:
    """Batches stay lists: the capture pads them itself, per batch."""
    return items


class TextDataModule(L.LightningDataModule):
    """Tokenizes records with the model's tokenizer and splits them by group.

    Args:
        records: records, or a source for :func:`probes.data.sources.load_records`.
        tokenizer: the frozen model's tokenizer.
        tokenization: the model's tokenization contract (``FrozenLM.identity
            ["tokenization"]``); default: plain texts without special tokens.
        max_tokens, overflow: the capture's length policy (``truncate | skip | error``).
        span: ``full`` or ``solution`` (the capture reads tokens from the solution on).
        steps: cut each solution into steps for per-step features (``CaptureConfig.steps``).
        fractions: train / calib / test shares (default 60 / 20 / 20).
        seed: split seed.
        split_file: where the assignment is saved; when it exists it is reused as is, so
            every later step sees exactly the same split.
        batch_size: texts per batch.
        mapping: column mapping for a source of the user's own.

    The calib split is served as Lightning's validation split. Under DDP the split is
    assigned and saved once, in :meth:`prepare_data` (one process, before the others read
    it: ``prepare_data_per_node`` is off, so one process in the whole run writes).
    """

    def __init__(
        self,
        records: Sequence[Record] | str | Path,
        tokenizer,
        *,
        tokenization: dict | None = None,
        max_tokens: int = 1024,
        overflow: str = "truncate",
        steps: str | None = None,
        span: str = "full",
        fractions: Sequence[float] = (0.6, 0.2, 0.2),
        seed: int = 0,
        split_file: str | Path | None = None,
        batch_size: int = 4,
        mapping: Mapping[str, str] | None = None,
    ):
        super().__init__()
        self.source = records
        self.tokenizer = tokenizer
        self.tokenization = tokenization or {"add_special_tokens": False, "text_format": "plain"}
        self.max_tokens, self.overflow, self.span = max_tokens, overflow, span
        self.steps = steps
        self.fractions, self.seed = tuple(fractions), seed
        self.split_file = Path(split_file) if split_file else None
        self.batch_size = batch_size
        self.mapping = mapping
        self.items: dict[str, list[TextItem]] = {}
        self._records: list[Record] | None = None
        # One writer of split_file in the whole run (the store is shared by every node).
        self.prepare_data_per_node = False

    def prepare_data(self) -> None:
        """Assign the splits and save them to ``split_file``, unless it exists. Lightning
        calls this in one process, then holds the others at a barrier until it is done."""
        if self.split_file is None or self.split_file.exists():
            return
        assignment = assign_splits(self.records(), self.fractions, self.seed)
        save_splits(assignment, self.split_file, self.seed, self.fractions)

    def setup(self, stage: str | None = None) -> None:
        self._load()

    def records(self) -> list[Record]:
        """The records, read once."""
        if self._records is None:
            self._records = (
                load_records(self.source, self.mapping)
                if isinstance(self.source, str | Path)
                else list(self.source)
            )
        return self._records

    def _load(self) -> None:
        if self.items:
            return
        records = self.records()
        if self.split_file is None:
            assignment = assign_splits(records, self.fractions, self.seed)
        else:
            if not self.split_file.exists():  # used outside a Trainer: this one process
                self.prepare_data()
            assignment = load_splits(self.split_file, records)
        toks = tokenize_records(
            records,
            self.tokenizer,
            self.tokenization,
            self.span,
            self.max_tokens,
            self.overflow,
            self.steps,
        )
        self.items = {s: [] for s in SPLITS}
        for rec, tok in zip(records, toks, strict=True):
            self.items[assignment[rec.id]].append(TextItem(rec, tok, assignment[rec.id]))

    def split(self, name: str) -> list[TextItem]:
        if name not in SPLITS and name != "all":
            raise ValueError(f"unknown split {name!r}; choose one of {(*SPLITS, 'all')}")
        self._load()
        if name == "all":
            return [item for s in SPLITS for item in self.items[s]]
        return self.items[name]

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # records, not tensors: the capture moves its own inputs to the device

    def _loader(self, items: list[TextItem], shuffle: bool = False) -> DataLoader:
        return DataLoader(
            items, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate_items
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.split("train"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split("calib"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split("test"))

    def predict_dataloader(self) -> DataLoader:
        # Every record, longest first: batches of similar lengths waste little on padding.
        items = sorted(self.split("all"), key=lambda it: -len(it.tokens.ids))
        return self._loader(items)
