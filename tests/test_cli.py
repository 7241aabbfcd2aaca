from __future__ import annotations

from probes.cli import main


def test_inspect_prints_a_row_per_layer(capsys):
    assert main(["inspect", "--model", "tiny-gpt2", "--text", "3 + 4 = 7. The answer is 7."]) == 0
    out = capsys.readouterr().out
    assert "tiny-gpt2" in out and "27 tokens" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("L")] == [
        "L00",
        "L01",
        "L02",
    ]


def test_inspect_reports_bad_layers_without_a_traceback(capsys):
    assert main(["inspect", "--model", "tiny-gpt2", "--layers", "7"]) == 2
    assert "option 'layers': index 7 is out of range" in capsys.readouterr().err
