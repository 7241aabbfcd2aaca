"""Record validation: every bad input names the file, line and field; nothing is returned."""

from __future__ import annotations

import json

import pytest

from probes.cli import main
from probes.data import RecordError, load_records, read_jsonl, write_jsonl
from probes.data.records import Record

GOOD = {"id": "a", "problem": "1 + 1?", "solution": "1 + 1 = 2", "label": 1, "group": "p1"}


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"id": "b", "text": "x", "label": 1', "malformed JSON"),
        ('{"id": "b", "text": "x"}', "field 'label' is missing"),
        (
            '{"id": "b", "text": "x", "label": 2}',
            "field 'label' must be 1/true (valid) or 0/false (invalid), got 2",
        ),
        (
            '{"id": "b", "text": "x", "label": "yes"}',
            "field 'label' must be 1/true (valid) or 0/false (invalid), got 'yes'",
        ),
        ('{"id": "a", "text": "x", "label": 0}', "field 'id': duplicate id 'a' (first at "),
        ('{"id": "b", "text": "  ", "label": 0}', "field 'text' is empty"),
        ('{"id": "b", "problem": "p", "solution": "", "label": 0}', "field 'solution' is empty"),
        ('{"id": "b", "label": 0}', "field 'text' (or 'problem' + 'solution') is missing"),
        ('{"text": "x", "label": 0}', "field 'id' is missing or empty"),
    ],
)
def test_bad_jsonl_line_is_named(tmp_path, bad_line, message):
    path = write_lines(tmp_path / "recs.jsonl", [json.dumps(GOOD), "", bad_line])
    with pytest.raises(RecordError) as err:
        read_jsonl(path)
    assert str(err.value).startswith(f"{path}:3: ")  # blank line 2 still counts
    assert message in str(err.value)


def test_csv_errors_name_the_line_and_mapping_renames_columns(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("uid,response,ok\nr1,2 + 2 = 4,1\nr2,2 + 2 = 5,maybe\n")
    with pytest.raises(
        RecordError, match=r"mine.csv:3: field 'label' must be 1/true .* got 'maybe'"
    ):
        load_records(path, {"id": "uid", "text": "response", "label": "ok"})
    path.write_text("uid,response,ok\nr1,2 + 2 = 4,1\nr2,2 + 2 = 5,0\n")
    recs = load_records(path, {"id": "uid", "text": "response", "label": "ok"})
    assert [(r.id, r.text, r.label, r.group) for r in recs] == [
        ("r1", "2 + 2 = 4", 1, "r1"),
        ("r2", "2 + 2 = 5", 0, "r2"),
    ]


def test_parquet_and_unknown_mapping(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["t1", ""], "label": [True, False]}), path)
    with pytest.raises(RecordError, match=r"x.parquet row 1: field 'text' is empty"):
        load_records(path)
    with pytest.raises(RecordError, match="option 'mapping': unknown field"):
        load_records(path, {"txt": "text"})


def test_round_trip_and_full_text(tmp_path):
    recs = [Record(**GOOD, meta={"k": [1, 2]}), Record(id="t", text="plain", label=0, group="g")]
    path = write_jsonl(recs, tmp_path / "out" / "r.jsonl")
    assert read_jsonl(path) == recs
    rec = recs[0]
    assert rec.full_text == "Problem: 1 + 1?\nSolution: 1 + 1 = 2"
    assert rec.full_text[rec.solution_start :] == "1 + 1 = 2"
    assert recs[1].solution_start is None  # a text without the solution marker


def test_build_from_a_bad_file_writes_nothing(tmp_path, capsys):
    src = write_lines(
        tmp_path / "in.jsonl", [json.dumps(GOOD), '{"id": "a", "text": "x", "label": 0}']
    )
    out = tmp_path / "out.jsonl"
    assert main(["data", "build", str(src), "--out", str(out)]) == 1
    assert "in.jsonl:2: field 'id': duplicate id 'a'" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl*"))


def test_atomic_temp_never_matches_the_targets_glob(tmp_path):
    """A temp left by a killed writer must not be read as a shard (``*.safetensors``)."""
    from probes.atomic import atomic_path

    with atomic_path(tmp_path / "s.safetensors") as tmp:
        tmp.write_bytes(b"x")
        assert tmp.parent == tmp_path and list(tmp_path.glob("*.safetensors")) == []
    assert (tmp_path / "s.safetensors").read_bytes() == b"x"
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]
