"""Bad options: each is refused at load, by name, with exit 1 and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from probes.config import ExperimentConfig, from_dict, load_experiment
from probes.errors import ConfigError

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"capture": 5}, "option 'capture': expected a section"),
        ({"data": 5}, "option 'data': expected a section"),
        ({"data": {"fractions": "abc"}}, "option 'data.fractions': expected"),
        ({"data": {"fractions": [1, 0, 0]}}, None),  # valid config; the experiment refuses it
        ({"seed": "abc"}, "option 'seed': expected int"),
        ({"n_boot": 0}, "option 'n_boot': expected an int >= 2, got 0"),
        ({"n_boot": -5}, "option 'n_boot': expected an int >= 2"),
        ({"capture": {"k": True}}, "option 'capture.k': expected int, got True"),
        ({"capture": {"max_tokens": 1.5}}, "option 'capture.max_tokens': expected int"),
        ({"wandb": {"log_store": "yes"}}, "option 'wandb.log_store': expected bool"),
        ({"trainer": {"devices": 0}}, "option 'trainer.devices': expected an int >= 1"),
        ({"trainer": {"num_nodes": "two"}}, "option 'trainer.num_nodes': expected int"),
        ({"model": {"revision": 3}}, "option 'model.revision': expected str | None"),
        (
            {"scorers": [{"name": "x", "kind": "logistic", "max_epochs": -3}]},
            "option 'scorers.max_epochs': expected an int >= 1, got -3",
        ),
        (
            {"scorers": [{"name": "x", "kind": "logistic", "temperature": "no"}]},
            "option 'scorers.temperature': expected bool",
        ),
        ({"eval": {"cv": 1}}, "option 'eval.cv': expected 'auto', 0 (the single split) or"),
        ({"eval": {"cv": "five"}}, "option 'eval.cv': expected 'auto', 0"),
        ({"eval": {"cv": True}}, "option 'eval.cv': expected int | str, got True"),
        ({"eval": {"cv": 0, "refit": True}}, None),  # valid; the experiment refuses it
        ({"name": "../../x"}, "option 'name': '../../x' is not a valid experiment name"),
        ({"name": "a/b"}, "not a valid experiment name"),
    ],
)
def test_bad_options_are_named(data, message):
    if message is None:
        from_dict(ExperimentConfig, data)
        return
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("|", r"\|")
    ):
        from_dict(ExperimentConfig, data)


def test_probe_layer_out_of_range_names_probe_layer(tiny_llama):
    from probes.capture import SpectralCapture
    from probes.config import CaptureConfig

    with pytest.raises(ConfigError, match="option 'probe_layer': index 99 is out of range"):
        SpectralCapture(tiny_llama, CaptureConfig(probe_layer=99))


def run_train(*overrides, cwd=None):
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "tiny.yaml")]
    for o in overrides:
        cmd.append(o)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize(
    "override, message",
    [
        ("data=5", "option 'data': expected a section"),
        ("data.fractions=abc", "option 'data.fractions'"),
        ("seed=abc", "option 'seed'"),
        ("n_boot=0", "option 'n_boot'"),
        ("capture=5", "option 'capture': expected a section"),
        ("name=../../x", "not a valid experiment name"),
    ],
)
def test_train_exits_1_with_one_line_and_no_traceback(override, message, tmp_path):
    out = run_train(override, cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("train.py: error: ") and message in out.stderr
    assert not (tmp_path / "results").exists()  # refused before any work


def test_an_unwritable_results_dir_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = load_experiment(ROOT / "configs" / "tiny.yaml")
    from dataclasses import replace

    from probes.experiment import run_experiment

    with pytest.raises(ConfigError, match="option 'results_dir': cannot write results to"):
        run_experiment(replace(cfg, results_dir=str(blocker / "results")))
