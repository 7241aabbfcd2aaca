"""The record format, its validation, and reading/writing record files.

A record is one labelled text: ``id`` (unique), ``text`` or ``problem`` + ``solution``,
``label`` (1 valid, 0 invalid), ``group`` (the problem: all variants of one problem stay in
one split), ``source`` and optional ``meta``. Reading validates every record and fails with a
message that names the file, line and field, before anything is returned.

Labels follow one rule in every reader: ``1``/``true`` is valid, ``0``/``false`` invalid, as
numbers (``1``, ``1.0``), booleans or strings (``"1"``, ``"true"``, any case). Anything else
is refused.

The solution span follows one rule too (:func:`solution_start_of`): a ``problem`` +
``solution`` record's solution, or, in a ``text``, whatever follows the ``\nSolution: ``
marker. A ``text`` without the marker has no solution span.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_lines
from ..errors import RecordError

#: How a problem and its solution become one text; the solution span starts after the marker.
PROBLEM_PREFIX = "Problem: "
SOLUTION_MARKER = "\nSolution: "


@dataclass(frozen=True)
class Record:
    """One labelled text. Either ``text`` or both ``problem`` and ``solution`` are set."""

    id: str
    label: int | None
    group: str
    source: str = ""
    text: str | None = None
    problem: str | None = None
    solution: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: Where the record was read (``file:line``), for messages; not part of the record.
    where: str = field(default="", compare=False, repr=False)

    @property
    def full_text(self) -> str:
        """What the model reads: ``text``, or ``Problem: ...\\nSolution: ...``."""
        if self.text is not None:
            return self.text
        return f"{PROBLEM_PREFIX}{self.problem}{SOLUTION_MARKER}{self.solution}"

    @property
    def solution_start(self) -> int | None:
        """Character offset of the solution in :attr:`full_text`; ``None`` for a ``text``
        without the solution marker."""
        if self.text is not None:
            return solution_start_of(self.text)
        return len(PROBLEM_PREFIX) + len(self.problem or "") + len(SOLUTION_MARKER)

    def span_start(self, span: str) -> int:
        """Where the analysed span starts under ``capture.span`` (``full`` or ``solution``)."""
        if span == "full":
            return 0
        start = self.solution_start
        if start is None:
            raise RecordError(
                f"{self.where or 'record ' + repr(self.id)}: capture.span is 'solution' but the "
                f"text has no {SOLUTION_MARKER!r} marker; give 'problem' + 'solution', or use "
                "a scorer / config with span 'full'"
            )
        return start

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("where")
        return {k: v for k, v in out.items() if v is not None and v != {}}


def solution_start_of(text: str) -> int | None:
    r"""Offset just after the first ``\nSolution: `` marker of ``text``, or ``None``.

    Example:
        >>> solution_start_of("Problem: 2 + 2?\nSolution: 4")
        26
    """
    at = text.find(SOLUTION_MARKER)
    return None if at < 0 else at + len(SOLUTION_MARKER)


_TRUE, _FALSE = ("1", "true"), ("0", "false")


def parse_label(value: Any, where: str) -> int:
    """The one label rule (see the module docstring): ``1``/``true`` -> 1, ``0``/``false`` -> 0.

    Example:
        >>> [parse_label(v, "x") for v in (1, True, 0.0, "TRUE", " 0 ")]
        [1, 1, 0, 1, 0]
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
        return int(value.strip().lower() in _TRUE)
    raise RecordError(
        f"{where}: field 'label' must be 1/true (valid) or 0/false (invalid), got {value!r}"
    )


def validate_record(raw: Any, where: str, require_label: bool = True) -> Record:
    """Check one raw mapping and build a :class:`Record`; errors start with ``where``.

    ``require_label=False`` reads records to score: a label is then optional.
    """
    if not isinstance(raw, Mapping):
        raise RecordError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(
        set(raw) - {"id", "label", "group", "source", "text", "problem", "solution", "meta"}
    )
    if unknown:
        raise RecordError(f"{where}: unknown field(s) {unknown}")
    rid = _key_field(raw.get("id"), "id", where)
    if rid is None:
        raise RecordError(f"{where}: field 'id' is missing or empty")
    label = raw.get("label")
    if label is None or _is_nan(label):
        if require_label:
            raise RecordError(f"{where}: field 'label' is missing")
        label = None
    else:
        label = parse_label(label, where)
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
    source = raw.get("source")
    if source is not None and not isinstance(source, str):
        raise RecordError(f"{where}: field 'source' must be a string, got {source!r}")
    group = _key_field(raw.get("group"), "group", where)
    return Record(
        id=rid,
        label=label,
        group=rid if group is None else group,
        source=source or "",
        text=text,
        problem=problem,
        solution=solution,
        meta=dict(meta),
        where=where,
    )


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _key_field(value: Any, name: str, where: str) -> str | None:
    """An id or group: a non-empty string or an integer; missing, empty or NaN -> ``None``."""
    if value is None or _is_nan(value) or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RecordError(f"{where}: field {name!r} must be a string or an integer, got {value!r}")
    return str(value)


def _nonempty(value: Any, name: str, where: str) -> None:
    if value is None:
        raise RecordError(f"{where}: field {name!r} is missing")
    if not isinstance(value, str):
        raise RecordError(
            f"{where}: field {name!r} must be a string, got {type(value).__name__} {value!r}"
        )
    if not value.strip():
        raise RecordError(f"{where}: field {name!r} is empty")


def iter_jsonl(path: str | Path, problems: list[str] | None = None) -> Iterator[tuple[str, Any]]:
    """``(where, object)`` for each non-blank line; malformed JSON or UTF-8 raises naming the
    line (or, given a ``problems`` list, is described there and left out). A UTF-8
    byte-order mark is ignored."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                _fail(f"{where}: not valid UTF-8 (byte {err.start + 1} of the line)", problems)
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                _fail(f"{where}: malformed JSON: {err.msg} (column {err.colno})", problems)
                continue
            yield where, obj


def _fail(message: str, problems: list[str] | None) -> None:
    if problems is None:
        raise RecordError(message)
    problems.append(message)


def validate_all(
    rows: Iterable[tuple[str, Any]],
    transform: Callable[[Any, str], Any] | None = None,
    require_label: bool = True,
    problems: list[str] | None = None,
) -> list[Record]:
    """Validate ``(where, raw)`` pairs (after ``transform(raw, where)``); ids must be unique.

    With a ``problems`` list, a bad record is described there and left out instead of
    raising (``probes score`` without ``--strict``); errors of the file itself still raise.
    """
    records, wheres, seen = [], [], {}
    for where, raw in rows:
        try:
            if transform is not None and isinstance(raw, Mapping):
                raw = transform(raw, where)
            rec = validate_record(raw, where, require_label)
            if rec.id in seen:
                raise RecordError(
                    f"{where}: field 'id': duplicate id {rec.id!r} (first at {seen[rec.id]})"
                )
        except RecordError as err:
            if problems is None:
                raise
            problems.append(str(err))
            continue
        seen[rec.id] = where
        records.append(rec)
        wheres.append(where)
    return records


def read_jsonl(path: str | Path) -> list[Record]:
    """Read and validate a JSONL file; any bad line raises naming file, line and field."""
    return validate_all(iter_jsonl(path))


def write_jsonl(records: Iterable[Record], path: str | Path) -> Path:
    """Write records atomically: a temp file in the same folder, then a rename."""
    return atomic_lines(path, (json.dumps(r.to_json(), ensure_ascii=False) for r in records))
