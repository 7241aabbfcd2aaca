"""Results folders are runs: a rerun never mixes with an earlier one, a failed run never
becomes ``latest``, and ``probes export`` reads the latest successful run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from probes.config import ScorerSpec, WandbConfig, load_experiment
from probes.errors import ConfigError
from probes.experiment import resolve_run, run_experiment

ROOT = Path(__file__).parents[1]


def test_reruns_write_fresh_folders_and_latest_follows_success(tmp_path, capsys):
    base = load_experiment(ROOT / "configs" / "tiny.yaml")
    base = replace(
        base,
        results_dir=str(tmp_path / "results"),
        stores_dir=str(tmp_path / "stores"),
        data=replace(base.data, source=str(tmp_path / "data.jsonl")),
        wandb=WandbConfig(mode="disabled"),
        n_boot=10,
    )
    root = tmp_path / "results" / "tiny"
    three = (
        ScorerSpec("threshold", "threshold"),
        ScorerSpec("spectral_lr", "logistic", max_epochs=5),
        ScorerSpec("length", "logistic", select=("confound/n_tokens_full",), max_epochs=5),
    )
    run_experiment(replace(base, scorers=three))
    first = resolve_run(root)
    run_experiment(replace(base, scorers=three[2:]))
    second = resolve_run(root)
    assert first != second and first.parent == second.parent == root
    assert sorted(p.name for p in (second / "bundles").iterdir()) == ["length"]
    assert sorted(p.name for p in (first / "bundles").iterdir()) == [
        "length",
        "spectral_lr",
        "threshold",
    ]
    metrics = json.loads((second / "metrics.json").read_text())
    assert set(metrics["scorers"]) == {"length"} and metrics["run"] == second.name
    # A run that fails late (its scorer selects nothing) leaves latest where it was.
    bad = ScorerSpec("broken", "logistic", select=("zzz/*",))
    with pytest.raises(ConfigError, match="pattern 'zzz/\\*' matches no feature"):
        run_experiment(replace(base, scorers=(bad,)))
    assert resolve_run(root) == second
    failed = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())[-1]
    status = json.loads((failed / "status.json").read_text())
    assert status["status"] == "failed" and "zzz" in status["error"]
    assert not (failed / "bundles").exists() and not (failed / "metrics.json").exists()
    # probes export reads the latest successful run: only its scorers exist there.
    from probes.cli import main

    capsys.readouterr()
    args = ["export", "--results", str(root), "--out", str(tmp_path / "out")]
    assert main([*args, "--scorer", "length"]) == 0
    assert main([*args, "--scorer", "spectral_lr"]) == 1
    assert "available: ['length']" in capsys.readouterr().err
    # tiny.yaml sets eval.refit: the refit bundle is exported on request.
    refit = ["export", "--results", str(root), "--out", str(tmp_path / "refit"), "--refit"]
    assert main([*refit, "--scorer", "length"]) == 0
    from probes.bundle import Scorer

    assert Scorer.load(tmp_path / "refit").meta["fit"]["fitted_on"].startswith("all ")
