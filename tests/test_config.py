from __future__ import annotations

import pytest

from probes.config import CaptureConfig, ConfigError, InspectConfig, from_dict, load_config


def test_unknown_option_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("capture:\n  lapacian: sym\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown option\(s\) capture.lapacian"):
        load_config(InspectConfig, path)


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match="option 'capture.heads': expected one of"):
        from_dict(InspectConfig, {"capture": {"heads": "max"}})
    with pytest.raises(ConfigError, match="option 'k'"):
        CaptureConfig(k=0)


def test_yaml_lists_become_tuples_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name_or_path: tiny-gpt2\ncapture:\n  layers: [0, 2]\n")
    cfg = load_config(InspectConfig, path)
    assert cfg.capture.layers == (0, 2) and cfg.model.name_or_path == "tiny-gpt2"
    assert CaptureConfig(**cfg.capture.to_dict()) == cfg.capture


def test_shipped_configs_load():
    from pathlib import Path

    for path in sorted(Path(__file__).parents[1].glob("configs/inspect*.yaml")):
        load_config(InspectConfig, path)


def test_base_files_chain_and_a_loop_is_named(tmp_path):
    from probes.config import load_experiment

    (tmp_path / "root.yaml").write_text(
        "capture: {span: solution, max_tokens: 300, k: 3}\nseed: 7\n"
    )
    (tmp_path / "mid.yaml").write_text("base: root.yaml\ncapture: {max_tokens: 200}\n")
    (tmp_path / "leaf.yaml").write_text("base: mid.yaml\ncapture: {heads: each}\nname: leaf\n")
    cfg = load_experiment(tmp_path / "leaf.yaml")
    # Every level counts; the nearest file wins, option by option within a section.
    assert (cfg.capture.span, cfg.capture.max_tokens, cfg.capture.k) == ("solution", 200, 3)
    assert (cfg.capture.heads, cfg.seed, cfg.name) == ("each", 7, "leaf")
    (tmp_path / "root.yaml").write_text("base: leaf.yaml\n")
    with pytest.raises(ConfigError, match="option 'base' loops: .*leaf.yaml -> .*mid.yaml"):
        load_experiment(tmp_path / "leaf.yaml")
