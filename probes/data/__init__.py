"""Labelled math-reasoning records: format, builders, loaders, splits and datamodules."""

from .builders import BUILDERS
from .datamodule import TextDataModule, TextItem
from .generate import extract_answer
from .records import Record, RecordError, read_jsonl, write_jsonl
from .sources import load_records
from .splits import assign_splits

__all__ = [
    "BUILDERS",
    "Record",
    "RecordError",
    "TextDataModule",
    "TextItem",
    "assign_splits",
    "extract_answer",
    "load_records",
    "read_jsonl",
    "write_jsonl",
]
