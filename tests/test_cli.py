from __future__ import annotations

from probes.cli import main


def test_inspect_prints_a_row_per_layer(capsys):
    assert (
        main(["inspect", "model.name_or_path=tiny-gpt2", "--text", "3 + 4 = 7. The answer is 7."])
        == 0
    )
    out = capsys.readouterr().out
    assert "tiny-gpt2" in out and "27 tokens" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("L")] == [
        "L00",
        "L01",
        "L02",
    ]


def test_inspect_reports_bad_layers_without_a_traceback(capsys):
    assert main(["inspect", "model.name_or_path=tiny-gpt2", "capture.layers=[7]"]) == 1
    assert "option 'layers': index 7 is out of range" in capsys.readouterr().err


def test_data_build_and_describe(tmp_path, capsys):
    out = tmp_path / "gsm.jsonl"
    assert main(["data", "build", "gsm-perturb", "--n", "5", "--seed", "3", "--out", str(out)]) == 0
    assert "wrote 10 records (5 valid)" in capsys.readouterr().out
    assert main(["data", "describe", str(out), "--model", "tiny-gpt2"]) == 0
    report = capsys.readouterr().out
    assert "records 10, groups 5" in report and "valid 5 (50.0%)" in report
    assert "tokens (invalid):" in report


def test_data_build_rejects_options_a_builder_does_not_take(tmp_path, capsys):
    assert main(["data", "build", "champ", "--n", "5", "--out", str(tmp_path / "c.jsonl")]) == 1
    assert "builder 'champ' takes no option(s) ['n']" in capsys.readouterr().err


def test_shipped_example_data_loads(capsys):
    from pathlib import Path

    example = Path(__file__).parents[1] / "data" / "example.jsonl"
    assert main(["data", "describe", str(example)]) == 0
    assert "records 4, groups 2" in capsys.readouterr().out
