"""Grouped, stratified, seeded train / calib / test splits, saved for reuse.

All records of one group (one problem and its variants) land in one split, so a detector is
never tested on the twin of a training record; each split's class balance follows the whole
set's as closely as whole groups allow.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import ConfigError, DataError
from .records import Record

SPLITS = ("train", "calib", "test")


def assign_splits(
    records: Sequence[Record], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, str]:
    """``record id -> split``, by :func:`partition` of the records' groups and labels."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(
            f"option 'fractions': expected 3 non-negative values summing to 1, got {fractions}"
        )
    parts = partition([r.group for r in records], [r.label for r in records], fractions, seed)
    return {rec.id: SPLITS[k] for rec, k in zip(records, parts, strict=True)}


def partition(
    groups: Sequence[str], labels: Sequence[int], fractions: Sequence[float], seed: int = 0
) -> list[int]:
    """The part (an index into ``fractions``) of every row: whole groups, each part's class
    balance following the whole set's as closely as whole groups allow. The one splitting
    rule of the project: the train / calib / test split, the cross-validation folds and
    the train / calib split inside each fold.

    Greedy: groups in a seeded random order (largest first) go to the part that is furthest
    below its target count for the group's classes; a part with share 0 gets nothing.
    """
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    totals = Counter(labels)
    target = {(k, c): f * totals[c] for k, f in enumerate(fractions) for c in totals}
    current = Counter()
    keys = sorted(members)
    random.Random(seed).shuffle(keys)
    keys.sort(key=lambda g: -len(members[g]))  # stable: ties keep the seeded order
    out = [0] * len(labels)
    for g in keys:
        counts = Counter(labels[i] for i in members[g])
        part = max(
            (k for k, f in enumerate(fractions) if f > 0),
            key=lambda k, counts=counts: _deficit(k, counts, target, current),
        )
        for c, n in counts.items():
            current[part, c] += n
        for i in members[g]:
            out[i] = part
    return out


def _deficit(part: int, counts: Counter, target: dict, current: Counter) -> float:
    """How far ``part`` is below target for the classes in ``counts`` (relative units)."""
    return sum(
        n * (target[part, c] - current[part, c]) / max(target[part, c], 1e-9)
        for c, n in counts.items()
    )


def check_splits(
    records: Sequence[Record],
    fractions: Sequence[float],
    seed: int,
    source: str = "the records",
    both_classes: bool = False,
) -> dict[str, str]:
    """The split assignment, after checking that the records can serve it: not empty, and
    every split with a share > 0 non-empty (with ``both_classes``, holding both classes, as
    an experiment needs). Runs before any model loads; the error says what to change.
    """
    if not records:
        raise DataError(f"{source}: no records")
    labels = Counter(r.label for r in records)
    if both_classes and len(labels) < 2:
        (only,) = labels
        raise DataError(
            f"{source}: all {len(records)} records have label {only}; scoring needs valid (1) "
            "and invalid (0) records"
        )
    assignment = assign_splits(records, fractions, seed)
    n_groups = len({r.group for r in records})
    for split, share in zip(SPLITS, fractions, strict=True):
        rows = [r for r in records if assignment[r.id] == split]
        if share > 0 and not rows:
            raise DataError(
                f"{source}: split {split!r} would be empty ({len(records)} records in "
                f"{n_groups} group(s), data.fractions {list(fractions)}); add records or "
                "groups, or change data.fractions"
            )
        if both_classes and len({r.label for r in rows}) < 2:
            why = "is empty" if not rows else f"holds only label {rows[0].label}"
            raise DataError(
                f"{source}: split {split!r} {why} ({len(rows)} records; {len(records)} in "
                f"{n_groups} group(s), data.fractions {list(fractions)}); it needs both "
                "classes: add records or groups, or change data.fractions or data.seed"
            )
    return assignment


def save_splits(assignment: dict[str, str], path: str | Path, seed: int, fractions) -> None:
    """Save the assignment (to a temp name, then renamed). Under DDP only one process calls
    this (``TextDataModule.prepare_data``)."""
    payload = {"seed": seed, "fractions": list(fractions), "splits": assignment}
    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True))


def load_splits(path: str | Path, records: Sequence[Record]) -> dict[str, str]:
    """A saved assignment; refused if it does not cover exactly these record ids."""
    data = json.loads(Path(path).read_text())
    assignment = data["splits"]
    ids = {r.id for r in records}
    missing, extra = ids - set(assignment), set(assignment) - ids
    if missing or extra:
        raise DataError(
            f"{path}: the saved split does not match the records ({len(missing)} ids missing, "
            f"{len(extra)} unknown, e.g. {sorted(missing or extra)[:3]}); delete it to re-split"
        )
    return assignment
