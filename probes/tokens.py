"""Tokenization for the capture: records become texts, texts become validated tokens,
before any forward pass.

The tokenization contract (``FrozenLM.identity["tokenization"]``, from the model config):
``text_format`` says how a record becomes a text (``plain``: ``Problem: ...\nSolution:
...``; ``chat``: the tokenizer's chat template with the problem as the user turn and the
solution as the assistant turn), and ``add_special_tokens`` whether the tokenizer adds its
special tokens (BOS...) to a plain text. A chat text is tokenized as it is: its template
already holds the special tokens it wants, so none are added on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, ProbesError, RecordError
from .steps import StepSpan, step_spans

if TYPE_CHECKING:  # probes.data imports this module: no import cycle at run time
    from .data.records import Record


class TextTooLongError(ProbesError, ValueError):
    """A text is longer than ``max_tokens`` under ``overflow: error``."""


@dataclass(frozen=True)
class Tokenized:
    """One record's tokens.

    Attributes:
        id: record id, for messages.
        ids: token ids read (after truncation; empty when skipped).
        span_start: index of the first analysed token.
        truncated: cut at ``max_tokens``.
        skipped: longer than ``max_tokens`` under ``overflow: skip``, or under ``truncate``
            when the cut would leave fewer than 2 tokens of the analysed span.
        n_tokens_full, n_chars, n_steps: the whole analysed span's length before any
            truncation, in tokens, characters and non-blank lines.
        steps: the solution's steps and their token spans in the analysed span, when the
            capture computes per-step features (``CaptureConfig.steps``); else empty.
    """

    id: str
    ids: list[int]
    span_start: int = 0
    truncated: bool = False
    skipped: bool = False
    n_tokens_full: int = 0
    n_chars: int = 0
    n_steps: int = 0
    steps: tuple[StepSpan, ...] = ()


MIN_SPAN_TOKENS = 2


def render(record: Record, tokenizer, text_format: str) -> tuple[str, int | None, str]:
    """The text the model reads for ``record``: ``(text, solution start or None, format)``.

    ``text_format`` ``auto`` takes the record's ``meta.text_format`` (how it was generated),
    else ``plain``. In ``chat``, a ``text`` record is split at its ``Problem: `` /
    ``\nSolution: `` markers; the solution start is where the assistant's content begins,
    and the text ends with that content.
    """
    fmt = record.meta.get("text_format", "plain") if text_format == "auto" else text_format
    if fmt == "plain":
        return record.full_text, record.solution_start, fmt
    if fmt != "chat":
        raise RecordError(f"{_where(record)}: meta.text_format must be plain or chat, got {fmt!r}")
    problem, solution = _turns(record)
    if not isinstance(getattr(tokenizer, "chat_template", None), str):
        raise ConfigError(
            "option 'model.text_format': 'chat' needs a tokenizer with a chat template; this "
            "one has none (use plain)"
        )
    turns = [{"role": "user", "content": problem}, {"role": "assistant", "content": solution}]
    text = tokenizer.apply_chat_template(turns, tokenize=False)
    start = text.rfind(solution)
    if start < 0:
        raise RecordError(
            f"{_where(record)}: the chat template changed the solution's text, so its span "
            "cannot be found (use text_format plain)"
        )
    # The text ends where the assistant's content ends, as when the model generated it: the
    # template's end-of-turn tokens come after, and the solution span is the content alone.
    return text[: start + len(solution)], start, fmt


def _where(record: Record) -> str:
    return record.where or f"record {record.id!r}"


def _turns(record: Record) -> tuple[str, str]:
    from .data.records import PROBLEM_PREFIX, SOLUTION_MARKER

    if record.text is None:
        return record.problem or "", record.solution or ""
    text = record.text
    at = text.find(SOLUTION_MARKER)
    if not text.startswith(PROBLEM_PREFIX) or at < 0:
        raise RecordError(
            f"{_where(record)}: a chat-format text needs 'problem' + 'solution', or a text "
            f"'{PROBLEM_PREFIX}...{SOLUTION_MARKER!r}...'"
        )
    return text[len(PROBLEM_PREFIX) : at], text[at + len(SOLUTION_MARKER) :]


def tokenize_records(
    records: Sequence[Record],
    tokenizer,
    tokenization: dict[str, Any],
    span: str,
    max_tokens: int,
    overflow: str,
    steps: str | None = None,
) -> list[Tokenized]:
    """Render (:func:`render`) and tokenize records under a tokenization contract; the span
    rule is :meth:`Record.span_start`'s, applied to the rendered text. ``steps``: the step
    segmentation mode (``None``: no steps)."""
    texts, starts, special = [], [], []
    for rec in records:
        text, start, fmt = render(rec, tokenizer, tokenization["text_format"])
        if span == "solution" and start is None:
            rec.span_start("solution")  # raises, naming the record
        texts.append(text)
        starts.append(start)
        special.append(tokenization["add_special_tokens"] and fmt == "plain")
    return tokenize_texts(
        tokenizer,
        texts,
        [r.id for r in records],
        starts if span == "solution" else None,
        max_tokens,
        overflow,
        special,
        solution_starts=starts if steps else None,
        steps=steps,
    )


def tokenize_texts(
    tokenizer,
    texts: Sequence[str],
    ids: Sequence[str],
    span_starts: Sequence[int] | None,
    max_tokens: int,
    overflow: str,
    add_special_tokens: bool | Sequence[bool] = False,
    solution_starts: Sequence[int | None] | None = None,
    steps: str | None = None,
) -> list[Tokenized]:
    """Tokenize and validate every text; every problem is raised before any model work.

    Args:
        tokenizer: a Hugging Face tokenizer (fast, when ``span_starts`` is given).
        texts, ids: ``N`` texts and their record ids.
        span_starts: ``N`` character offsets of the analysed span, or ``None`` for full texts.
        max_tokens: longest text read.
        overflow: ``truncate``, ``skip`` or ``error`` for longer texts.
        add_special_tokens: add the tokenizer's special tokens (one flag, or one per text).
        solution_starts: ``N`` character offsets of each text's solution (``None`` for a
            text without one), read when ``steps`` is set.
        steps: segment each solution into steps (:func:`probes.steps.segment` mode) and
            map them onto tokens (:attr:`Tokenized.steps`).
    """
    if steps is not None and solution_starts is None:
        raise ValueError("steps need the solution_starts of the texts")
    if len(ids) != len(texts) or (span_starts is not None and len(span_starts) != len(texts)):
        raise ValueError("texts, ids and span_starts must have the same length")
    if isinstance(add_special_tokens, bool):
        add_special_tokens = [add_special_tokens] * len(texts)
    out = []
    for i, (rid, text) in enumerate(zip(ids, texts, strict=True)):
        if not isinstance(text, str) or not text.strip():
            raise RecordError(f"record {rid!r} (#{i}): text is empty")
        enc = tokenizer(
            text,
            add_special_tokens=add_special_tokens[i],
            return_offsets_mapping=span_starts is not None or steps is not None,
        )
        tokens = list(enc["input_ids"])
        start = 0
        if span_starts is not None:
            start = _first_token_at(enc["offset_mapping"], span_starts[i], rid, i, len(text))
        span_text = text[span_starts[i] :] if span_starts is not None else text
        length = {
            "n_tokens_full": len(tokens) - start,
            "n_chars": len(span_text),
            "n_steps": sum(1 for line in span_text.splitlines() if line.strip()),
        }
        truncated = len(tokens) > max_tokens
        if truncated and overflow == "error":
            raise TextTooLongError(
                f"record {rid!r} (#{i}): {len(tokens)} tokens > max_tokens={max_tokens} "
                "(set option 'overflow' to truncate or skip)"
            )
        if truncated and overflow == "skip":
            out.append(Tokenized(rid, [], 0, truncated=False, skipped=True, **length))
            continue
        if truncated and max_tokens - start < MIN_SPAN_TOKENS:
            # Truncation would cut (almost) the whole analysed span: nothing left to read.
            out.append(Tokenized(rid, [], 0, truncated=False, skipped=True, **length))
            continue
        tokens = tokens[:max_tokens]
        if len(tokens) - start < MIN_SPAN_TOKENS:
            raise RecordError(
                f"record {rid!r} (#{i}): the analysed span has {max(0, len(tokens) - start)} "
                f"token(s); at least {MIN_SPAN_TOKENS} are needed"
            )
        spans = ()
        if steps is not None:
            offsets = enc["offset_mapping"]
            spans = step_spans(text, offsets, solution_starts[i], start, len(tokens), steps)
        out.append(Tokenized(rid, tokens, start, truncated=truncated, steps=spans, **length))
    return out


def _first_token_at(offsets, char_start: int, rid: str, i: int, n_chars: int) -> int:
    """Index of the first token that ends after character ``char_start``."""
    if not 0 <= char_start < n_chars:
        raise RecordError(f"record {rid!r} (#{i}): span start {char_start} is outside the text")
    for t, (_, end) in enumerate(offsets):
        if end > char_start:
            return t
    return len(offsets)
