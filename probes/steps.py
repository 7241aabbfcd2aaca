"""Steps of a solution, and which one is wrong.

A solution is cut into steps by its lines (the non-blank ones). A solution written on one
line falls back to its sentences (a period, question or exclamation mark followed by a
space), and a sentence-less line to its equations (each ``... = ...`` up to the next
comma or semicolon). Each step is a character span of the solution, without its leading
and trailing spaces.

The labels map onto steps:

* CHAMP (``meta.first_wrong_step``, a human-marked character span of the solution): the
  step that holds the span's first character;
* gsm-perturb (``meta.corruption``): the step that holds the corrupted result, found
  through the edit that wrote it (edits are on the original text's offsets; the earlier
  edits shift it);
* a valid solution: no wrong step.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .config import STEP_MODES

if TYPE_CHECKING:  # probes.data imports probes.tokens, which imports this module
    from .data.records import Record
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_EQUATION_END = re.compile(r"(?<=[^\s,;])\s*[,;]\s+(?=\S)")


@dataclass(frozen=True)
class Step:
    """One step: ``start``, ``end`` character offsets into the solution (``end`` exclusive)."""

    index: int
    start: int
    end: int

    def holds(self, offset: int) -> bool:
        return self.start <= offset < self.end


class StepSpan(NamedTuple):
    """One step as the capture reads it: ``start``, ``end`` characters of the solution, and
    ``first``, ``stop`` tokens of the analysed span (``stop <= first``: not read, cut off by
    truncation)."""

    start: int
    end: int
    first: int
    stop: int


def segment(solution: str, mode: str = "lines") -> list[Step]:
    """The steps of ``solution``, in order.

    Args:
        mode: ``lines`` (non-blank lines; one line falls back to ``sentences``) or
            ``sentences`` (sentences, then equations, within each line).

    Example:
        >>> [solution[s.start : s.end] for solution in ["48 / 2 = 24.\\n48 + 24 = 72."]
        ...  for s in segment(solution)]
        ['48 / 2 = 24.', '48 + 24 = 72.']
    """
    if mode not in STEP_MODES:
        raise ValueError(f"unknown step mode {mode!r}; choose one of {STEP_MODES}")
    lines = _pieces(solution, 0, len(solution), re.compile(r"\n"))
    if mode == "lines" and len(lines) > 1:
        spans = lines
    else:
        spans = []
        for start, end in lines:
            sentences = _pieces(solution, start, end, _SENTENCE_END)
            if len(sentences) == 1:
                sentences = _pieces(solution, start, end, _EQUATION_END)
            spans += sentences
    return [Step(i, s, e) for i, (s, e) in enumerate(spans)]


def _pieces(text: str, start: int, end: int, sep: re.Pattern) -> list[tuple[int, int]]:
    """Non-blank pieces of ``text[start:end]`` between matches of ``sep``, stripped."""
    out, at = [], start
    for m in [*sep.finditer(text, start, end), None]:
        stop = end if m is None else m.start()
        piece = text[at:stop]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            out.append((at + lead, at + len(piece.rstrip())))
        if m is not None:
            at = m.end()
    return out


def wrong_step_offset(record: Record) -> int | None:
    """Character offset, in the record's solution, of its first wrong step's marked text;
    ``None`` for a valid solution or one without a step annotation."""
    meta = record.meta or {}
    if record.label == 1:
        return None
    marked = meta.get("first_wrong_step")
    if isinstance(marked, dict) and marked.get("start") is not None:
        return int(marked["start"])
    corruption = meta.get("corruption")
    if isinstance(corruption, dict):
        return _corrupted_offset(corruption)
    return None


def _corrupted_offset(corruption: dict) -> int | None:
    """Where the corrupted result sits in the corrupted text: its edit's original offset,
    shifted by the length changes of the edits before it."""
    edits = sorted(corruption.get("edits", []), key=lambda e: e["start"])
    target = next(
        (
            e
            for e in edits
            if e["old"] == corruption["original_value"]
            and e["new"] == corruption["corrupted_value"]
        ),
        None,
    )
    if target is None:
        return None
    shift = sum(len(e["new"]) - len(e["old"]) for e in edits if e["start"] < target["start"])
    return target["start"] + shift


def wrong_step(record: Record, steps: list[Step]) -> int | None:
    """Index of the first wrong step among ``steps`` (of the record's solution); ``None``
    for a valid solution. An offset that falls between steps (on a blank or a separator)
    is given to the next step."""
    offset = wrong_step_offset(record)
    if offset is None:
        return None
    for step in steps:
        if offset < step.end:
            return step.index
    return steps[-1].index if steps else None


def token_spans(
    offsets: list[tuple[int, int]], steps: list[Step], solution_start: int = 0
) -> list[tuple[int, int]]:
    """Each step's token span ``[first, last + 1)``: the tokens whose characters overlap it.

    Args:
        offsets: ``(start, end)`` character span of every token in the text the model reads
            (a fast tokenizer's ``offset_mapping``); special tokens have ``(0, 0)``.
        steps: the solution's steps (offsets into the solution).
        solution_start: where the solution starts in that text.

    Example:
        >>> token_spans([(0, 2), (2, 5), (5, 6), (6, 9)], [Step(0, 0, 3), Step(1, 4, 7)], 2)
        [(1, 2), (3, 4)]
    """
    spans = []
    for step in steps:
        lo, hi = step.start + solution_start, step.end + solution_start
        hits = [t for t, (s, e) in enumerate(offsets) if e > s and s < hi and e > lo]
        spans.append((hits[0], hits[-1] + 1) if hits else (0, 0))
    return spans


def step_spans(
    text: str,
    offsets: list[tuple[int, int]],
    solution_start: int | None,
    span_start: int,
    n_read: int,
    mode: str,
) -> tuple[StepSpan, ...]:
    """The steps of the solution in ``text`` with their token spans in the analysed span.

    Args:
        text: the text the model reads; its solution starts at ``solution_start`` (``None``:
            no solution, no steps).
        offsets: every token's character span in ``text``.
        span_start: the analysed span's first token.
        n_read: tokens read (after truncation): later steps are cut or not read.
        mode: :func:`segment`'s mode.
    """
    if solution_start is None:
        return ()
    steps = segment(text[solution_start:], mode)
    out = []
    for step, (a, b) in zip(steps, token_spans(offsets, steps, solution_start), strict=True):
        a, b = max(a, span_start), min(b, n_read)
        out.append(StepSpan(step.start, step.end, a - span_start, max(a, b) - span_start))
    return tuple(out)


#: Step labels: the first wrong step, a step known correct, a step of unknown status.
WRONG, CORRECT, UNKNOWN = 1, 0, -1


def step_labels(record: Record, steps: Sequence[StepSpan | Step]) -> list[int]:
    """Each step's label: :data:`WRONG` for the first wrong step, :data:`CORRECT` for a step
    before it and every step of a valid solution, :data:`UNKNOWN` after it (a step after
    the first error may or may not be wrong) and on an invalid solution without a step
    annotation, or of an unlabelled record.

    Example:
        >>> from probes.data.records import Record
        >>> r = Record("r", 0, "g", problem="?", solution="a\\nb\\nc",
        ...            meta={"first_wrong_step": {"start": 2}})
        >>> step_labels(r, segment(r.solution))
        [0, 1, -1]
    """
    as_steps = [Step(i, s.start, s.end) for i, s in enumerate(steps)]
    if record.label is None:
        return [UNKNOWN] * len(as_steps)
    if record.label == 1:
        return [CORRECT] * len(as_steps)
    wrong = wrong_step(record, as_steps)
    if wrong is None:
        return [UNKNOWN] * len(as_steps)
    return [
        CORRECT if i < wrong else WRONG if i == wrong else UNKNOWN for i in range(len(as_steps))
    ]


#: The derived step column ``k / (S - 1)`` (:func:`positions`), read beside the capture's
#: step features by the step scorers that may know where a step sits.
STEP_POSITION = "step_confound/position"


def positions(step: np.ndarray, n_steps: np.ndarray) -> np.ndarray:
    """``(M,)`` relative position ``k / (S - 1)`` of step ``k`` of ``S`` (0 when ``S = 1``).

    Example:
        >>> positions(np.array([0, 1, 2, 0]), np.array([3, 3, 3, 1]))
        array([0. , 0.5, 1. , 0. ])
    """
    return np.where(n_steps > 1, step / np.maximum(n_steps - 1, 1), 0.0)
