"""Tokenization for the capture: one text at a time, validated before any forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ProbesError, RecordError


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
    """

    id: str
    ids: list[int]
    span_start: int = 0
    truncated: bool = False
    skipped: bool = False


MIN_SPAN_TOKENS = 2


def tokenize_records(
    tokenizer,
    texts: Sequence[str],
    ids: Sequence[str],
    span_starts: Sequence[int] | None,
    max_tokens: int,
    overflow: str,
) -> list[Tokenized]:
    """Tokenize and validate every text; every problem is raised before any model work.

    Args:
        tokenizer: a Hugging Face tokenizer (fast, when ``span_starts`` is given).
        texts, ids: ``N`` texts and their record ids.
        span_starts: ``N`` character offsets of the analysed span, or ``None`` for full texts.
        max_tokens: longest text read.
        overflow: ``truncate``, ``skip`` or ``error`` for longer texts.
    """
    if len(ids) != len(texts) or (span_starts is not None and len(span_starts) != len(texts)):
        raise ValueError("texts, ids and span_starts must have the same length")
    out = []
    for i, (rid, text) in enumerate(zip(ids, texts, strict=True)):
        if not isinstance(text, str) or not text.strip():
            raise RecordError(f"record {rid!r} (#{i}): text is empty")
        # GGUF vocabularies get different special tokens in transformers 4.x and 5.x: none.
        enc = tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=span_starts is not None
        )
        tokens = list(enc["input_ids"])
        start = 0
        if span_starts is not None:
            start = _first_token_at(enc["offset_mapping"], span_starts[i], rid, i, len(text))
        truncated = len(tokens) > max_tokens
        if truncated and overflow == "error":
            raise TextTooLongError(
                f"record {rid!r} (#{i}): {len(tokens)} tokens > max_tokens={max_tokens} "
                "(set option 'overflow' to truncate or skip)"
            )
        if truncated and overflow == "skip":
            out.append(Tokenized(rid, [], 0, truncated=False, skipped=True))
            continue
        if truncated and max_tokens - start < MIN_SPAN_TOKENS:
            # Truncation would cut (almost) the whole analysed span: nothing left to read.
            out.append(Tokenized(rid, [], 0, truncated=False, skipped=True))
            continue
        tokens = tokens[:max_tokens]
        if len(tokens) - start < MIN_SPAN_TOKENS:
            raise RecordError(
                f"record {rid!r} (#{i}): the analysed span has {max(0, len(tokens) - start)} "
                f"token(s); at least {MIN_SPAN_TOKENS} are needed"
            )
        out.append(Tokenized(rid, tokens, start, truncated=truncated))
    return out


def _first_token_at(offsets, char_start: int, rid: str, i: int, n_chars: int) -> int:
    """Index of the first token that ends after character ``char_start``."""
    if not 0 <= char_start < n_chars:
        raise RecordError(f"record {rid!r} (#{i}): span start {char_start} is outside the text")
    for t, (_, end) in enumerate(offsets):
        if end > char_start:
            return t
    return len(offsets)
