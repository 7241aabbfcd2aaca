"""Steps of a solution and the labelled wrong step: on every real CHAMP annotation and on
gsm-perturb's corruptions (both modes), the mapped step holds the marked text."""

from __future__ import annotations

import pytest

from probes.data import BUILDERS
from probes.data.records import Record
from probes.steps import Step, segment, token_spans, wrong_step, wrong_step_offset


def texts(solution: str, steps: list[Step]) -> list[str]:
    return [solution[s.start : s.end] for s in steps]


def test_lines_then_sentences_then_equations():
    s = "  First, 2 + 2 = 4.\n\n  Then 4 * 3 = 12.  \n"
    assert texts(s, segment(s)) == [
        "First, 2 + 2 = 4.",
        "Then 4 * 3 = 12.",
    ]
    one = "In May she sold 48 / 2 = 24. Together: 48 + 24 = 72! The answer is 72."
    assert texts(one, segment(one)) == [
        "In May she sold 48 / 2 = 24.",
        "Together: 48 + 24 = 72!",
        "The answer is 72.",
    ]
    eqs = "x = 3 + 4 = 7, y = 7 * 2 = 14; z = 14 - 1 = 13"
    assert texts(eqs, segment(eqs)) == ["x = 3 + 4 = 7", "y = 7 * 2 = 14", "z = 14 - 1 = 13"]
    both = "A. B.\nC"
    assert texts(both, segment(both, "sentences")) == ["A.", "B.", "C"]
    with pytest.raises(ValueError, match="unknown step mode"):
        segment("x", "paragraphs")


def test_every_champ_annotation_falls_in_its_mapped_step():
    records = BUILDERS["champ"](seed=0)
    invalid = [r for r in records if r.label == 0]
    assert len(invalid) == 444
    for r in invalid:
        steps = segment(r.solution)
        i = wrong_step(r, steps)
        start = r.meta["first_wrong_step"]["start"]
        assert steps[i].holds(start), (r.id, start, steps[i])
    for r in records:
        if r.label == 1:
            assert wrong_step(r, segment(r.solution)) is None


@pytest.mark.parametrize("mode", ["propagate", "local"])
def test_gsm_perturb_wrong_step_holds_the_corrupted_result(mode):
    invalid = [r for r in BUILDERS["gsm-perturb"](n=60, mode=mode, seed=0) if r.label == 0]
    assert len(invalid) == 60
    for r in invalid:
        c = r.meta["corruption"]
        offset = wrong_step_offset(r)
        assert r.solution[offset : offset + len(c["corrupted_value"])] == c["corrupted_value"]
        steps = segment(r.solution)
        assert steps[wrong_step(r, steps)].holds(offset)


def test_an_offset_on_a_separator_goes_to_the_next_step():
    r = Record(
        id="x",
        label=0,
        group="x",
        problem="p",
        solution="a = 1\n\nb = 2",
        meta={"first_wrong_step": {"start": 6, "end": 12}},
    )
    assert wrong_step(r, segment(r.solution)) == 1


@pytest.mark.integration
def test_token_spans_cover_each_step_on_the_embedded_tokenizer():
    from probes.models import load_frozen

    tok = load_frozen("smollm2-135m").tokenizer
    for r in [r for r in BUILDERS["champ"](seed=0) if r.label == 0][:20]:
        enc = tok(r.full_text, add_special_tokens=False, return_offsets_mapping=True)
        steps = segment(r.solution)
        spans = token_spans(enc["offset_mapping"], steps, r.solution_start)
        for step, (a, b) in zip(steps, spans, strict=True):
            decoded = tok.decode(enc["input_ids"][a:b]).strip()
            assert (
                r.solution[step.start : step.end].strip() in decoded
                or decoded in (r.solution[step.start - 2 : step.end + 2])
            ), (step, decoded)
        assert all(a < b for a, b in spans)
        assert [a for a, _ in spans] == sorted(a for a, _ in spans)
