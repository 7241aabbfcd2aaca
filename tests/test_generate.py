"""The generate builder on a tiny random model, and answer extraction on hand-written text."""

from __future__ import annotations

import pytest

from probes.data.generate import build_generate, extract_answer, normalize_number


@pytest.mark.parametrize(
    "text, answer",
    [
        ("3 + 4 = 7. The answer is 7.", "7"),
        ("First 2 + 2 = 4, so the answer is: 12", "12"),
        ("The answer is 5. Wait, the answer is 6.", "6"),
        ("... #### 1,234", "1234"),
        ("so we get \\boxed{42}", "42"),
        ("Total: $1,200.50", "1200.5"),
        ("The answer is -3.", "-3"),
        ("It is 72.0", "72"),
        ("no numbers here", None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_normalize_number():
    assert normalize_number("007") == "7" and normalize_number("x") is None


def test_generate_on_a_tiny_random_model(capsys):
    with pytest.warns(UserWarning, match="AUROC on such a set is mostly noise"):
        recs = build_generate(
            seed=0, n=6, model="tiny-llama", max_new_tokens=12, batch_size=4, progress=False
        )
    assert 0 < len(recs) <= 6
    for r in recs:
        assert r.meta["extracted"] == extract_answer(r.solution)
        assert r.label == int(r.meta["extracted"] == normalize_number(r.meta["answer"]))
    assert "generate: accuracy" in capsys.readouterr().err
    again = build_generate(seed=0, n=6, model="tiny-llama", max_new_tokens=12, progress=False)
    assert [r.solution for r in again] == [r.solution for r in recs]
    other = build_generate(seed=1, n=6, model="tiny-llama", max_new_tokens=12, progress=False)
    assert {r.problem for r in other} != {r.problem for r in recs}
