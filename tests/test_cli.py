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


def test_version_help_and_exit_codes(capsys):
    import pytest

    from probes import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"probes {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "probes train --config tiny" in text
    with pytest.raises(SystemExit) as usage:  # a usage error: 2, with the new syntax named
        main(["train", "--config", "tiny", "--set", "n_boot=5"])
    assert usage.value.code == 2 and "key=value, without --set" in capsys.readouterr().err
    assert main(["train", "--config", "no-such-config"]) == 1  # an error in the input: 1
    assert "packaged:" in capsys.readouterr().err


def test_devices_auto_and_print_config(capsys):
    import yaml

    assert (
        main(["extract", "--config", "extract-demo", "trainer.devices=auto", "--print-config"]) == 0
    )
    assert yaml.safe_load(capsys.readouterr().out)["trainer"]["devices"] == "auto"


def test_every_option_is_validated_and_named():
    """Each field of every config section, given a value of the wrong kind, is refused with
    its full dotted name."""
    import dataclasses
    import typing

    import pytest

    from probes.config import ConfigError, ExperimentConfig, from_dict

    def wrong(tp) -> object:
        text = str(tp)
        return 7 if "dict" in text else {"not": "valid"}

    def fields(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            sub = f.default_factory
            if dataclasses.is_dataclass(sub):
                yield from fields(sub, f"{prefix}{f.name}.")
                yield f"{prefix}{f.name}", 5
            elif f.name != "scorers":
                yield f"{prefix}{f.name}", wrong(hints[f.name])

    checked = 0
    for option, value in fields(ExperimentConfig):
        *path, last = option.split(".")
        data: dict = {}
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
        with pytest.raises(ConfigError, match=f"option '{option}'"):
            from_dict(ExperimentConfig, data)
        checked += 1
    from probes.config import ScorerSpec

    for f in dataclasses.fields(ScorerSpec):
        spec = {
            "name": "s",
            "kind": "logistic",
            f.name: wrong(typing.get_type_hints(ScorerSpec)[f.name]),
        }
        with pytest.raises(ConfigError, match=f"option 'scorers.{f.name}'"):
            from_dict(ExperimentConfig, {"scorers": [spec]})
        checked += 1
    assert checked > 50


def test_extract_reads_an_experiment_config(capsys):
    import yaml

    assert main(["extract", "--config", "tiny", "batch_size=2", "--print-config"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["batch_size"] == 2 and "scorers" not in resolved  # its extraction part
    assert main(["extract", "--config", "tiny", "capture.bad=1"]) == 1
    assert "overrides capture.bad=1: unknown option(s) capture.bad" in capsys.readouterr().err
