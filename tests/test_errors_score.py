"""``probes score``: never overwrites its input, reads records as everything else does (one
span rule: CLI and API agree in every form), flags truncation, and reports bad input."""

from __future__ import annotations

import json
import os

import numpy as np

from probes.bundle import Scorer
from probes.cli import main
from probes.data.records import Record

PROBLEMS = [("7 + 8?", "7 + 8 = 15."), ("20 + 21?", "20 + 21 = 42."), ("5 + 5?", "5 + 5 = 10.")]


def score(bundle, src, out, *extra):
    return main(
        ["score", "--scorer", str(bundle), "--input", str(src), "--output", str(out), *extra]
    )


def read_out(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_output_may_not_be_the_input(tmp_path, solution_bundle, capsys):
    src = tmp_path / "same.jsonl"
    content = json.dumps({"id": "a", "problem": "1 + 1?", "solution": "1 + 1 = 2"}) + "\n"
    src.write_text(content)
    assert score(solution_bundle, src, src) == 1
    assert "would destroy the input" in capsys.readouterr().err
    link = tmp_path / "link.jsonl"
    link.symlink_to(src)
    assert score(solution_bundle, src, link) == 1
    assert src.read_text() == content and link.is_symlink()


def test_cli_and_api_give_one_score_for_one_record_in_every_form(tmp_path, solution_bundle):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [
        Record(id=f"r{i}", label=None, group=f"r{i}", problem=p, solution=s)
        for i, (p, s) in enumerate(PROBLEMS)
    ]
    forms = {
        "twins.jsonl": [
            {"id": r.id, "problem": r.problem, "solution": r.solution} for r in records
        ],
        "texts.jsonl": [{"id": r.id, "text": r.full_text} for r in records],
    }
    for name, rows in forms.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(tmp_path / "texts.csv", "w", newline="") as f:
        import csv

        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows([r.id, r.full_text] for r in records)
    pq.write_table(
        pa.table(
            {
                "id": [r.id for r in records],
                "problem": [r.problem for r in records],
                "solution": [r.solution for r in records],
            }
        ),
        tmp_path / "twins.parquet",
    )
    scorer = Scorer.load(solution_bundle)
    api_records = scorer.predict_proba(records)[:, 1]
    api_texts = scorer.predict_proba([r.full_text for r in records])[:, 1]
    np.testing.assert_array_equal(api_records, api_texts)
    for name in ("twins.jsonl", "texts.jsonl", "texts.csv", "twins.parquet"):
        out = tmp_path / f"{name}.out.jsonl"
        assert score(solution_bundle, tmp_path / name, out) == 0, name
        got = [r["p_valid"] for r in read_out(out)]
        np.testing.assert_array_equal(got, api_records, err_msg=name)


def test_truncation_is_flagged_per_record_and_counted(tmp_path, solution_bundle, capsys):
    long = "1 + 1 = 2. " * 40  # over the bundle's 96 tokens
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"id": "short", "problem": "1 + 1?", "solution": "1 + 1 = 2"})
        + "\n"
        + json.dumps({"id": "long", "problem": "1 + 1?", "solution": long})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    assert score(solution_bundle, src, out) == 0
    rows = {r["id"]: r for r in read_out(out)}
    assert rows["long"]["truncated"] is True and rows["long"]["n_tokens"] == 96
    assert rows["short"]["truncated"] is False and rows["short"]["n_tokens"] < 96
    assert "1 truncated to max_tokens" in capsys.readouterr().out


def test_an_empty_input_is_an_error_not_a_traceback(tmp_path, solution_bundle, capsys):
    src = tmp_path / "empty.jsonl"
    src.write_text("")
    assert score(solution_bundle, src, tmp_path / "o.jsonl") == 1
    assert "empty.jsonl: no records to score" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_a_text_without_a_solution_is_skipped_and_named(tmp_path, solution_bundle, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"id": "a", "text": "no marker here"})
        + "\n"
        + json.dumps({"id": "b", "problem": "1 + 1?", "solution": "1 + 1 = 2"})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    assert score(solution_bundle, src, out) == 0
    assert f"{src}:1: capture.span is 'solution'" in capsys.readouterr().err
    assert [r["id"] for r in read_out(out)] == ["b"]
    assert score(solution_bundle, src, tmp_path / "s.jsonl", "--strict") == 1


def test_outputs_get_the_users_umask(tmp_path, solution_bundle):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "b", "problem": "1 + 1?", "solution": "1 + 1 = 2"}) + "\n")
    old = os.umask(0o022)
    try:
        assert score(solution_bundle, src, tmp_path / "o.jsonl") == 0
    finally:
        os.umask(old)
    assert (tmp_path / "o.jsonl").stat().st_mode & 0o777 == 0o644
