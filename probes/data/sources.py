"""The one reader of records: a local JSONL / CSV / Parquet file or a Hugging Face dataset.

Data building, extraction, experiments, ``probes score``, ``evaluate.py`` and the bundle's
``predict_proba`` all read records through :func:`load_records`, so one text gets one span
and one label rule everywhere. Users' own data rarely uses our field names: ``mapping``
renames their columns (``{"text": "response", "label": "is_correct"}``); a mapped column
that is missing is named. Every record is validated; an error names the file and line (or
row) and the field, and nothing is returned.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import RecordError
from .records import Record, iter_jsonl, validate_all

FIELDS = ("id", "label", "group", "source", "text", "problem", "solution", "meta")


def apply_mapping(
    row: Mapping[str, Any], mapping: Mapping[str, str] | None, where: str = "record"
) -> dict[str, Any]:
    """Our field -> their column; other columns are dropped. A column the mapping names
    explicitly must exist in every row."""
    for f, col in (mapping or {}).items():
        if col not in row:
            raise RecordError(
                f"{where}: option 'mapping': column {col!r} (for field {f!r}) is not in the "
                f"data; its columns: {sorted(row)}"
            )
    full = {**{f: f for f in FIELDS}, **(mapping or {})}
    return {f: row[col] for f, col in full.items() if col in row and row[col] is not None}


def load_records(
    source: str | Path,
    mapping: Mapping[str, str] | None = None,
    split: str = "train",
    require_label: bool = True,
    problems: list[str] | None = None,
) -> list[Record]:
    """Records from ``source``: ``*.jsonl``, ``*.csv``, ``*.parquet``, or a Hugging Face
    dataset name (hub access needs a network; ``split`` selects its split).

    Args:
        require_label: ``False`` to read texts to score, whose labels are optional.
        problems: collect bad records here (and leave them out) instead of raising.
    """
    if mapping:
        unknown = sorted(set(mapping) - set(FIELDS))
        if unknown:
            raise RecordError(f"option 'mapping': unknown field(s) {unknown}; fields: {FIELDS}")
    path = Path(source)
    suffix = path.suffix.lower()

    def transform(row, where):
        return apply_mapping(row, mapping, where)

    def validate(rows):
        return validate_all(rows, transform, require_label, problems)

    if suffix in (".jsonl", ".json"):
        if not path.is_file():
            raise RecordError(f"{path}: no such file")
        # Our own format: an unknown field is refused (a typo such as "grop" would silently
        # drop the grouping), except in records to score, whose extra fields are ignored.
        strict_fields = not mapping and require_label
        rows = iter_jsonl(path, problems)
        return validate_all(rows, None if strict_fields else transform, require_label, problems)
    if suffix == ".csv":
        return validate(_csv_rows(path))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        return validate((f"{path} row {i}", r) for i, r in enumerate(rows))
    if path.exists():
        raise RecordError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .csv, .parquet)")
    import datasets

    ds = datasets.load_dataset(str(source), split=split)
    return validate((f"{source}[{split}] row {i}", r) for i, r in enumerate(ds))


def _csv_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """Rows of a CSV file; ``utf-8-sig`` drops a byte-order mark (else it would stick to the
    first column's name), and a decoding error names its line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise RecordError(f"{path}:{line}: not valid UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row in reader:
        yield f"{path}:{reader.line_num}", row
