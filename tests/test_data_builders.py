"""Builders are deterministic, twins differ only where they should, and CHAMP is complete."""

from __future__ import annotations

import pytest

from probes.data import BUILDERS, extract_answer
from probes.data.corrupt import find_steps, revert
from probes.data.records import Record

SMALL = {"gsm-perturb": {"n": 12}, "arith-perturb": {"n": 12}, "champ": {}}


def _edits(rec: Record):
    return [(e["start"], e["old"], e["new"]) for e in rec.meta["corruption"]["edits"]]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_records_other_seed_other_records(name):
    a = BUILDERS[name](seed=1, **SMALL[name])
    b = BUILDERS[name](seed=1, **SMALL[name])
    c = BUILDERS[name](seed=2, **SMALL[name])
    assert a == b
    assert a != c
    if name != "champ":  # CHAMP's records are fixed by the data; the seed only orders them
        assert {r.problem for r in a} != {r.problem for r in c}


def test_champ_has_540_records_96_valid():
    recs = BUILDERS["champ"](seed=0)
    assert len(recs) == 540 and sum(r.label for r in recs) == 96
    assert len({r.group for r in recs}) == 270
    wrong = [r for r in recs if r.label == 0]
    assert all(
        r.meta["first_wrong_step"]["start"] < r.meta["first_wrong_step"]["end"] for r in wrong
    )
    assert all(r.meta["first_wrong_step"] is None for r in recs if r.label == 1)
    assert {r.meta["model"] for r in recs} >= {"GPT-3.5"}


@pytest.mark.parametrize("builder", ["gsm-perturb", "arith-perturb"])
@pytest.mark.parametrize("mode", ["propagate", "local"])
def test_twins_differ_only_in_the_corruption(builder, mode):
    recs = BUILDERS[builder](seed=3, n=25, mode=mode)
    by_group: dict[str, dict[int, Record]] = {}
    for r in recs:
        by_group.setdefault(r.group, {})[r.label] = r
    assert len(by_group) == 25 and all(len(t) == 2 for t in by_group.values())
    for twins in by_group.values():
        valid, bad = twins[1], twins[0]
        assert valid.problem == bad.problem and valid.solution != bad.solution
        # Undoing the recorded edits gives back the valid text exactly: nothing else changed.
        assert revert(bad.solution, _edits(bad)) == valid.solution
        info = bad.meta["corruption"]
        assert info["original_value"] != info["corrupted_value"]
        assert (info["original_value"], info["corrupted_value"]) in {
            (o, n) for _, o, n in _edits(bad)
        }
        n_steps = len(find_steps(valid.solution))
        # Exactly one step becomes wrong (propagate: later steps re-evaluated; local: the
        # corrupted step is wrong and later steps still use the true value).
        assert len(find_steps(bad.solution)) == n_steps - 1
        if mode == "local":
            assert {(o, n) for _, o, n in _edits(bad)} == {
                (info["original_value"], info["corrupted_value"])
            }
        else:
            assert extract_answer(bad.solution) != extract_answer(valid.solution)
            assert extract_answer(valid.solution) == valid.meta["answer"]


def test_builder_rejects_unknown_task():
    with pytest.raises(ValueError, match="option 'task'"):
        BUILDERS["arith-perturb"](task="division")
