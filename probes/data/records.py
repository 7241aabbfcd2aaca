"""The record format, its validation, and reading/writing record files.

A record is one labelled text: ``id`` (unique), ``text`` or ``problem`` + ``solution``,
``label`` (1 valid, 0 invalid), ``group`` (the problem: all variants of one problem stay in
one split), ``source`` and optional ``meta``. Reading validates every record and fails with a
message that names the file, line and field, before anything is returned.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_lines

#: How a problem and its solution become one text; the solution span starts after the marker.
PROBLEM_PREFIX = "Problem: "
SOLUTION_MARKER = "\nSolution: "


class RecordError(ValueError):
    """A record is malformed; the message names the file, line and field."""


@dataclass(frozen=True)
class Record:
    """One labelled text. Either ``text`` or both ``problem`` and ``solution`` are set."""

    id: str
    label: int
    group: str
    source: str = ""
    text: str | None = None
    problem: str | None = None
    solution: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def full_text(self) -> str:
        """What the model reads: ``text``, or ``Problem: ...\\nSolution: ...``."""
        if self.text is not None:
            return self.text
        return f"{PROBLEM_PREFIX}{self.problem}{SOLUTION_MARKER}{self.solution}"

    @property
    def solution_start(self) -> int:
        """Character offset of the solution in :attr:`full_text` (0 for plain texts)."""
        if self.text is not None:
            return 0
        return len(PROBLEM_PREFIX) + len(self.problem or "") + len(SOLUTION_MARKER)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}


def validate_record(raw: Any, where: str) -> Record:
    """Check one raw mapping and build a :class:`Record`; errors start with ``where``."""
    if not isinstance(raw, Mapping):
        raise RecordError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(
        set(raw) - {"id", "label", "group", "source", "text", "problem", "solution", "meta"}
    )
    if unknown:
        raise RecordError(f"{where}: unknown field(s) {unknown}")
    rid = raw.get("id")
    if rid is None or (isinstance(rid, str) and not rid.strip()):
        raise RecordError(f"{where}: field 'id' is missing or empty")
    label = raw.get("label")
    if isinstance(label, bool) or label not in (0, 1):
        raise RecordError(f"{where}: field 'label' must be 0 or 1, got {label!r}")
    text, problem, solution = raw.get("text"), raw.get("problem"), raw.get("solution")
    if text is not None:
        if problem is not None or solution is not None:
            raise RecordError(f"{where}: give either 'text' or 'problem' + 'solution', not both")
        _nonempty(text, "text", where)
    else:
        if problem is None and solution is None:
            raise RecordError(f"{where}: field 'text' (or 'problem' + 'solution') is missing")
        _nonempty(problem, "problem", where)
        _nonempty(solution, "solution", where)
    meta = raw.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise RecordError(f"{where}: field 'meta' must be an object, got {type(meta).__name__}")
    group = raw.get("group")
    return Record(
        id=str(rid),
        label=int(label),
        group=str(group) if group is not None and str(group) != "" else str(rid),
        source=str(raw.get("source") or ""),
        text=text,
        problem=problem,
        solution=solution,
        meta=dict(meta),
    )


def _nonempty(value: Any, name: str, where: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"{where}: field {name!r} is missing or empty")


def check_unique(records: Sequence[Record], wheres: Sequence[str]) -> None:
    """Raise naming both places when two records share an id."""
    first: dict[str, str] = {}
    for rec, where in zip(records, wheres, strict=True):
        if rec.id in first:
            raise RecordError(
                f"{where}: field 'id': duplicate id {rec.id!r} (first at {first[rec.id]})"
            )
        first[rec.id] = where


def iter_jsonl(path: str | Path) -> Iterator[tuple[str, Any]]:
    """``(where, object)`` for each non-blank line; malformed JSON raises naming the line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(
                    f"{where}: malformed JSON: {err.msg} (column {err.colno})"
                ) from None


def validate_all(
    rows: Iterable[tuple[str, Any]], transform: Callable[[Any], Any] | None = None
) -> list[Record]:
    """Validate ``(where, raw)`` pairs (after ``transform``) and check ids are unique."""
    records, wheres = [], []
    for where, raw in rows:
        if transform is not None and isinstance(raw, Mapping):
            raw = transform(raw)
        records.append(validate_record(raw, where))
        wheres.append(where)
    check_unique(records, wheres)
    return records


def read_jsonl(path: str | Path) -> list[Record]:
    """Read and validate a JSONL file; any bad line raises naming file, line and field."""
    return validate_all(iter_jsonl(path))


def write_jsonl(records: Iterable[Record], path: str | Path) -> Path:
    """Write records atomically: a temp file in the same folder, then a rename."""
    return atomic_lines(path, (json.dumps(r.to_json(), ensure_ascii=False) for r in records))
