"""Corruption of one intermediate result, on hand-written solutions."""

from __future__ import annotations

import random

import pytest

from probes.data.corrupt import (
    NoCorruptibleStep,
    corrupt,
    find_steps,
    plausible_wrong,
    revert,
    safe_eval,
)

SOLUTION = (
    "In May she sold 48 / 2 = 24 clips.\n"
    "Together she sold 48 + 24 = 72 clips.\n"
    "Then she gave away 72 - 10 = 62 clips.\n"
    "#### 62"
)


def test_find_steps_and_safe_eval():
    steps = find_steps(
        SOLUTION + "\nA wrong one: 2 + 2 = 5. A product: 28 x 4 = 112; $1,200 * 2 = $2,400"
    )
    assert [s.rhs for s in steps] == ["24", "72", "62", "112", "2,400"]
    assert safe_eval("3 × (2 + 1) ÷ 2") == 4.5
    with pytest.raises(ValueError):
        safe_eval("__import__('os')")


def test_propagate_carries_the_wrong_value_to_the_final_answer():
    for seed in range(10):
        c = corrupt(SOLUTION, "propagate", random.Random(seed), final_answer="62")
        assert revert(c.text, c.edits) == SOLUTION
        # After the error the chain is consistent again: only the corrupted step is wrong.
        assert len(find_steps(c.text)) == len(find_steps(SOLUTION)) - 1
        assert not c.text.endswith("#### 62")


def test_propagate_by_hand():
    """48 / 2 = 24 -> 48 + 24 = 72 -> 72 - 10 = 62: corrupting a result v into w moves every
    later result, and every later mention of each, by w - v."""
    expected = {
        "24": ["24", "24", "72", "72", "62", "62"],
        "72": ["72", "72", "62", "62"],
        "62": ["62", "62"],
    }
    seen = set()
    for seed in range(20):
        c = corrupt(SOLUTION, "propagate", random.Random(seed), final_answer="62")
        seen.add(c.original)
        assert [old for _, old, _ in c.edits] == expected[c.original]
        shift = int(c.corrupted) - int(c.original)
        assert all(int(new) - int(old) == shift for _, old, new in c.edits)
    assert seen == set(expected)  # every step gets chosen for some seed


def test_local_changes_only_that_result_and_later_steps_contradict():
    for seed in range(10):
        c = corrupt(SOLUTION, "local", random.Random(seed))
        assert [(o, n) for _, o, n in c.edits] == [(c.original, c.corrupted)]
        assert revert(c.text, c.edits) == SOLUTION
        # The corrupted step is wrong; a later step still uses the true value.
        assert len(find_steps(c.text)) == len(find_steps(SOLUTION)) - 1
        assert c.original in c.text[c.edits[0][0] + len(c.corrupted) :]


def test_plausible_wrong_values():
    rng = random.Random(0)
    for value in ["7", "24", "100", "9999", "0.75", "776.0", "1,200", "12345678901"]:
        for _ in range(20):
            wrong = plausible_wrong(value, rng)
            assert wrong != value
            if value not in ("100",):
                assert len(wrong) == len(value), (value, wrong)


def test_no_step_raises():
    with pytest.raises(NoCorruptibleStep):
        corrupt("There is nothing to compute here. #### 3", "local", random.Random(0))
