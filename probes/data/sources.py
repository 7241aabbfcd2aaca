"""Load records from a local JSONL / CSV / Parquet file or a Hugging Face dataset.

Users' own data rarely uses our field names: ``mapping`` renames their columns
(``{"text": "response", "label": "is_correct"}``). Every record is validated; an error names
the file and line (or row) and the field, and nothing is returned.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .records import Record, RecordError, iter_jsonl, validate_all

FIELDS = ("id", "label", "group", "source", "text", "problem", "solution", "meta")


def apply_mapping(row: Mapping[str, Any], mapping: Mapping[str, str] | None) -> dict[str, Any]:
    """Our field -> their column (other columns are dropped); labels given as booleans or
    ``"0"``/``"1"`` strings become ints."""
    mapping = {**{f: f for f in FIELDS}, **(mapping or {})}
    out = {f: row[col] for f, col in mapping.items() if col in row and row[col] is not None}
    label = out.get("label")
    if isinstance(label, bool):
        out["label"] = int(label)
    elif isinstance(label, str) and label.strip() in ("0", "1"):
        out["label"] = int(label)
    return out


def load_records(
    source: str | Path, mapping: Mapping[str, str] | None = None, split: str = "train"
) -> list[Record]:
    """Records from ``source``: ``*.jsonl``, ``*.csv``, ``*.parquet``, or a Hugging Face
    dataset name (hub access needs a network; ``split`` selects its split)."""
    if mapping:
        unknown = sorted(set(mapping) - set(FIELDS))
        if unknown:
            raise RecordError(f"option 'mapping': unknown field(s) {unknown}; fields: {FIELDS}")
    path = Path(source)
    suffix = path.suffix.lower()

    def transform(row):
        return apply_mapping(row, mapping)

    if suffix in (".jsonl", ".json"):
        return validate_all(iter_jsonl(path), transform if mapping else None)
    if suffix == ".csv":
        return validate_all(_csv_rows(path), transform)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        return validate_all(((f"{path} row {i}", r) for i, r in enumerate(rows)), transform)
    if path.exists():
        raise RecordError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .csv, .parquet)")
    import datasets

    ds = datasets.load_dataset(str(source), split=split)
    return validate_all(((f"{source}[{split}] row {i}", r) for i, r in enumerate(ds)), transform)


def _csv_rows(path: Path) -> Iterator[tuple[str, dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for row in reader:
            yield f"{path}:{reader.line_num}", row
