"""``probes data describe``: counts, class balance and lengths of a record set."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from .records import Record


def _quantiles(values: Sequence[int]) -> str:
    q = np.percentile(values, [0, 50, 90, 100]).round().astype(int)
    return f"min {q[0]}, median {q[1]}, p90 {q[2]}, max {q[3]}"


def describe(records: Sequence[Record], tokenizer=None) -> str:
    """A short report; token lengths too when a tokenizer is given."""
    n = len(records)
    valid = sum(r.label for r in records)
    lines = [
        f"records {n}, groups {len({r.group for r in records})}",
        f"labels: valid {valid} ({valid / max(n, 1):.1%}), "
        f"invalid {n - valid} ({(n - valid) / max(n, 1):.1%})",
    ]
    for source, count in sorted(Counter(r.source for r in records).items()):
        ok = sum(r.label for r in records if r.source == source)
        lines.append(f"source {source or '-'}: {count} records, {ok / count:.1%} valid")
    for label, name in ((1, "valid"), (0, "invalid")):
        chars = [len(r.full_text) for r in records if r.label == label]
        if chars:
            lines.append(f"chars ({name}): {_quantiles(chars)}")
        if chars and tokenizer is not None:
            toks = [
                len(tokenizer(r.full_text, add_special_tokens=False)["input_ids"])
                for r in records
                if r.label == label
            ]
            lines.append(f"tokens ({name}): {_quantiles(toks)}")
    return "\n".join(lines)
