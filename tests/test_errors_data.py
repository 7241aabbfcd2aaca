"""Bad and degenerate records: each case ends in one message that names the file, line and
field (or says what to change), before any model is loaded."""

from __future__ import annotations

import json

import pytest

from probes.config import DataConfig, ExtractConfig, ModelConfig
from probes.data import load_records
from probes.data.records import Record
from probes.errors import DataError, RecordError
from probes.extract import extract
from probes.jsonio import dumps, strict

# A model that cannot load: a data error must be found before anything tries.
NO_MODEL = ModelConfig(name_or_path="/nonexistent/model/folder")


def write_records(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows(n, label=lambda i: i % 2, group=lambda i: f"g{i // 2}"):
    return [
        {"id": f"r{i}", "text": f"{i} + 1 = {i + 1}", "label": label(i), "group": group(i)}
        for i in range(n)
    ]


def extract_on(path, fractions=(0.6, 0.2, 0.2)):
    cfg = ExtractConfig(data=DataConfig(source=str(path), fractions=fractions), model=NO_MODEL)
    return extract(cfg)


@pytest.mark.parametrize(
    "records, fractions, message",
    [
        ([], (0.6, 0.2, 0.2), "no records"),
        (rows(3), (0.6, 0.2, 0.2), "split 'test' would be empty"),
        (rows(20, group=lambda i: "one"), (0.6, 0.2, 0.2), "split 'calib' would be empty"),
    ],
)
def test_degenerate_data_fails_before_the_model_loads(tmp_path, records, fractions, message):
    path = write_records(tmp_path / "d.jsonl", records)
    with pytest.raises(DataError, match=message):
        extract_on(path, fractions)


def test_an_experiment_needs_both_classes_in_every_split(tmp_path):
    from probes.config import ExperimentConfig
    from probes.experiment import check_records

    one_class = write_records(tmp_path / "one.jsonl", rows(20, label=lambda i: 1))
    cfg = ExperimentConfig(data=DataConfig(source=str(one_class)), model=NO_MODEL)
    with pytest.raises(DataError, match="all 20 records have label 1"):
        check_records(cfg)
    # Valid records only in the first groups: test gets one class.
    skewed = write_records(tmp_path / "skew.jsonl", rows(12, label=lambda i: int(i < 2)))
    cfg = ExperimentConfig(data=DataConfig(source=str(skewed)), model=NO_MODEL)
    with pytest.raises(DataError, match="holds only label 0.*needs both classes"):
        check_records(cfg)
    from probes.errors import ConfigError

    cfg = ExperimentConfig(data=DataConfig(source=str(skewed), fractions=(1, 0, 0)))
    with pytest.raises(ConfigError, match="needs train, calib and test shares > 0"):
        check_records(cfg)


def test_cross_validation_that_the_data_cannot_serve_fails_before_the_model_loads(tmp_path):
    from probes.config import EvalConfig, ExperimentConfig
    from probes.errors import ConfigError
    from probes.experiment import check_records

    path = write_records(tmp_path / "d.jsonl", rows(40, group=lambda i: f"g{i}"))  # 20 valid
    cfg = ExperimentConfig(
        data=DataConfig(source=str(path)), model=NO_MODEL, eval=EvalConfig(cv=25)
    )
    with pytest.raises(
        DataError, match=r"with eval.cv 25, fold \d+'s \w+ part (is empty|holds).*lower eval.cv"
    ):
        check_records(cfg)
    few = write_records(tmp_path / "few.jsonl", rows(16))  # 8 valid: auto -> single split
    for cv, why in ((0, "eval.cv is 0"), ("auto", "eval.cv: auto chose the single split")):
        cfg = ExperimentConfig(
            data=DataConfig(source=str(few)), model=NO_MODEL, eval=EvalConfig(cv=cv, refit=True)
        )
        with pytest.raises(ConfigError, match=f"option 'eval.refit'.*{why}"):
            check_records(cfg)


def test_a_nan_group_is_no_group(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(
        '{"id": "a", "text": "x", "label": 1, "group": NaN}\n'
        '{"id": "b", "text": "y", "label": 0, "group": NaN}\n'
    )
    assert [r.group for r in load_records(path)] == ["a", "b"]  # not one group "nan"


def test_csv_with_a_byte_order_mark_keeps_its_first_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,text,label\nr1,2 + 2 = 4,1\n".encode())
    (rec,) = load_records(path)
    assert (rec.id, rec.label) == ("r1", 1)


def test_one_label_rule_with_and_without_a_mapping(tmp_path):
    plain = write_records(
        tmp_path / "p.jsonl",
        [{"id": "a", "text": "x", "label": True}, {"id": "b", "text": "y", "label": "false"}],
    )
    mapped = write_records(
        tmp_path / "m.jsonl",
        [{"id": "a", "text": "x", "ok": True}, {"id": "b", "text": "y", "ok": "false"}],
    )
    assert [r.label for r in load_records(plain)] == [1, 0]
    assert [r.label for r in load_records(mapped, {"label": "ok"})] == [1, 0]
    bad = write_records(tmp_path / "b.jsonl", [{"id": "a", "text": "x", "ok": "yes"}])
    for path, mapping in ((bad, {"label": "ok"}),):
        with pytest.raises(RecordError, match=r"b.jsonl:1: field 'label' must be 1/true"):
            load_records(path, mapping)


def test_wrong_types_are_named_as_such(tmp_path):
    path = write_records(tmp_path / "t.jsonl", [{"id": "a", "text": 42, "label": 1}])
    with pytest.raises(RecordError, match=r"t.jsonl:1: field 'text' must be a string, got int"):
        load_records(path)
    path = write_records(tmp_path / "i.jsonl", [{"id": [1], "text": "x", "label": 1}])
    with pytest.raises(RecordError, match="field 'id' must be a string or an integer"):
        load_records(path)


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_bytes(
        b'{"id": "a", "text": "x", "label": 1}\n{"id": "b", "text": "\xff", "label": 0}\n'
    )
    with pytest.raises(RecordError, match=r"u.jsonl:2: not valid UTF-8"):
        load_records(path)
    csv_path = tmp_path / "u.csv"
    csv_path.write_bytes(b"id,text,label\nr1,ok,1\nr2,\xff,0\n")
    with pytest.raises(RecordError, match=r"u.csv:3: not valid UTF-8"):
        load_records(csv_path)


def test_a_missing_mapped_column_is_named(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("uid,answer,ok\nr1,4,1\n")
    with pytest.raises(RecordError, match=r"column 'response' \(for field 'text'\) is not in"):
        load_records(path, {"id": "uid", "text": "response", "label": "ok"})


def test_a_text_record_and_its_problem_solution_twin_share_one_span():
    twin = Record(id="a", label=1, group="a", problem="2 + 2?", solution="2 + 2 = 4")
    text = Record(id="b", label=1, group="b", text=twin.full_text)
    assert text.span_start("solution") == twin.span_start("solution")
    bare = Record(id="c", label=1, group="c", text="2 + 2 = 4", where="f.jsonl:3")
    with pytest.raises(RecordError, match="f.jsonl:3: capture.span is 'solution'"):
        bare.span_start("solution")


def test_json_output_is_strict_with_the_reason_beside_a_null():
    out = json.loads(dumps({"auroc": float("nan"), "x": float("inf"), "ok": 1.5}))
    assert out == {
        "auroc": None,
        "auroc_reason": "not a number",
        "x": None,
        "x_reason": "inf is not a finite number",
        "ok": 1.5,
    }
    assert strict({"a": float("nan"), "a_reason": "one class"}) == {
        "a": None,
        "a_reason": "one class",
    }


def test_metrics_of_a_one_class_sample_say_why():
    import numpy as np

    from probes.metrics import evaluate_scores

    m = evaluate_scores(np.array([0.2, 0.8]), np.array([1, 1]), np.array([0, 1]), ["a", "b"], 10)
    assert m["auroc_reason"] == "undefined: the sample holds one class"
    assert json.loads(dumps(m))["auroc"] is None


def test_data_build_refuses_to_overwrite_its_input(tmp_path, capsys):
    from probes.cli import main

    src = write_records(tmp_path / "in.jsonl", rows(4))
    before = src.read_text()
    assert main(["data", "build", str(src), "--out", str(src)]) == 1
    assert "would destroy the input" in capsys.readouterr().err and src.read_text() == before


def test_unknown_fields_are_refused_in_data_but_ignored_in_texts_to_score(tmp_path):
    path = write_records(tmp_path / "x.jsonl", [{"id": "a", "text": "x", "label": 1, "grop": "g"}])
    with pytest.raises(RecordError, match=r"x.jsonl:1: unknown field\(s\) \['grop'\]"):
        load_records(path)
    (rec,) = load_records(path, require_label=False)
    assert rec.group == "a"
