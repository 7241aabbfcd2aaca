"""The whole calibration experiment on the tiny config, as CI runs it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from probes.config import ConfigError, load_experiment
from probes.data.splits import SPLITS
from tests.wandb_offline import (
    offline_artifacts,
    offline_history,
    offline_summary,
    offline_table,
)

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "--config",
        str(ROOT / "configs" / "tiny.yaml"),
        f"results_dir={tmp / 'results'}",
        f"stores_dir={tmp / 'stores'}",
        f"data.source={tmp / 'data' / 'arith.jsonl'}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    latest = tmp / "results" / "tiny" / "latest"
    assert latest.is_symlink()
    return latest.resolve(), out.stdout


def test_train_writes_every_artifact(tiny_run):
    folder, stdout = tiny_run
    for name in (
        "metrics.json",
        "layer_auroc.csv",
        "confound_audit.csv",
        "config.yaml",
        "roc.png",
        "reliability.png",
        "layer_auroc.png",
        "spectra.png",
        "folds.csv",
    ):
        assert (folder / name).stat().st_size > 0, name
    report = json.loads((folder / "metrics.json").read_text())
    names = {
        "threshold",
        "spectral_lr",
        "spectral_confounds",
        "length",
        "logprob",
        "confounds",
        "attn_logdet",
        "hidden_probe",
    }
    # tiny: 80 records, 40 valid -> eval.cv auto chooses 8 folds (>= 5 valid per fold).
    assert report["evaluation"]["mode"] == "cv" and report["evaluation"]["folds"] == 8
    assert report["evaluation"]["records"] == sum(report["n"][s] for s in SPLITS)
    assert set(report["scorers"]) == set(report["split_scorers"]) == names
    for row in [*report["scorers"].values(), *report["split_scorers"].values()]:
        for m in ("auroc", "auprc", "ece", "brier", "accuracy"):
            # A percentile interval need not hold the point estimate (ECE's often does not).
            assert 0 <= row[f"{m}_lo"] <= row[f"{m}_hi"] <= 1, (m, row)
        assert row["auroc_lo"] <= row["auroc"] <= row["auroc_hi"], row
    folds = list(csv.DictReader(open(folder / "folds.csv")))
    assert len(folds) == 8 * len(names)
    for name, row in report["scorers"].items():
        per_fold = [float(r["auroc"]) for r in folds if r["scorer"] == name]
        assert row["auroc_fold_mean"] == pytest.approx(sum(per_fold) / 8)
    assert "AUROC [95% CI]" in stdout and "fold sd" in stdout and "hidden_probe" in stdout
    assert report["evaluation"]["text"] in stdout
    top = report["headline"]
    assert top["scorer"] == "spectral_lr"
    assert top["baseline"] in {"length", "logprob", "confounds"}
    assert top["lo"] <= top["hi"] and 0 <= top["p"] <= 1
    assert report["headline_text"] in stdout
    pairs = {(r["scorer"], r["baseline"]) for r in report["paired"]}
    assert ("threshold", "length") in pairs and ("hidden_probe", "confounds") in pairs
    nested = {(r["scorer"], r["baseline"]) for r in report["nested"]}
    assert nested == {("spectral_confounds", b) for b in ("length", "logprob", "confounds")}
    rows = list(csv.DictReader(open(folder / "layer_auroc.csv")))
    assert {r["layer"] for r in rows if r["family"] == "eig_low"} == {"L00", "L01", "L02", "L03"}
    audit = list(csv.DictReader(open(folder / "confound_audit.csv")))
    assert "confound" not in {r["family"] for r in audit} and len(audit) >= 8


def test_offline_wandb_run_holds_the_metrics(tiny_run):
    folder, _ = tiny_run
    (run_dir,) = (folder / "wandb").glob("offline-run-*")
    summary = offline_summary(run_dir)
    report = json.loads((folder / "metrics.json").read_text())
    for prefix, key in (("cv", "scorers"), ("test", "split_scorers")):
        for scorer, row in report[key].items():
            for m in ("auroc", "auroc_lo", "auroc_hi", "ece", "brier", "accuracy"):
                assert summary[f"{prefix}/{scorer}/{m}"] == pytest.approx(row[m]), (scorer, m)
    top = json.loads((folder / "metrics.json").read_text())["headline"]
    assert summary["headline/diff"] == pytest.approx(top["diff"])
    assert summary["headline/baseline"] == top["baseline"]
    logged = offline_history(run_dir)
    tables = ("cv/comparison", "test/comparison", "folds", "paired", "nested", "headline")
    for table in (*tables, "layer_auroc", "confound_audit"):
        assert logged[f"{table}/_type"] == "table-file", table
    assert logged["folds/nrows"] == 8 * 8 and logged["headline/nrows"] == 1
    # The per-layer map and the audit: the CSV rows, as tables.
    for key in ("layer_auroc", "confound_audit"):
        rows = list(csv.DictReader(open(folder / f"{key}.csv")))
        table = offline_table(run_dir, key)
        assert table["columns"] == list(rows[0]) and len(table["data"]) == len(rows)
    # wandb.plot charts, one line per scorer.
    for chart in ("roc", "pr", "calibration"):
        table = offline_table(run_dir, f"charts/{chart}_table")
        assert {r[table["columns"].index("lineKey")] for r in table["data"]} == set(
            report["scorers"]
        )
    # Training curves under one key scheme.
    assert any(k.startswith("curves/spectral_lr/train/loss") for k in logged)
    assert summary["extract/records"] == 80 and summary["extract/tokens_per_s"] > 0
    # Artifacts: the store, and every bundle with its metrics and the best one aliased.
    artifacts = {a["name"]: a for a in offline_artifacts(run_dir)}
    store = artifacts["store-tiny"]
    assert store["type"] == "feature-store" and store["metadata"]["records"] == 80
    bundles = {a["metadata"]["scorer"]: a for a in artifacts.values() if a["type"] == "model"}
    assert set(report["scorers"]) <= set(bundles)
    best = max(report["scorers"], key=lambda n: report["scorers"][n]["auroc"])
    for name, a in bundles.items():
        if a["name"].endswith("-refit"):
            continue
        assert a["metadata"]["store"] == "store-tiny"
        want = report["split_scorers"][name]["auroc"]
        assert a["metadata"]["test_metrics"]["auroc"] == pytest.approx(want)
        assert ("best" in a["aliases"]) == (name == best), (name, a["aliases"])


def test_experiment_files_override_the_shared_default():
    cfg = load_experiment(ROOT / "configs" / "gsm-perturb.yaml")
    assert cfg.name == "gsm-perturb" and cfg.capture.span == "solution"  # from default.yaml
    assert cfg.build.options["mode"] == "propagate"
    champ = load_experiment(ROOT / "configs" / "champ.yaml")
    assert champ.capture.max_tokens == 768 and champ.capture.heads == "mean"


def test_bad_override_is_named(tmp_path, capsys):
    from probes.cli import main

    assert main(["train", "--config", "tiny", "capture.hedas=each"]) == 1
    err = capsys.readouterr().err
    assert "overrides capture.hedas=each: unknown option(s) capture.hedas" in err
    with pytest.raises(ConfigError, match="override 'nokey': expected key=value"):
        load_experiment(ROOT / "configs" / "tiny.yaml", ["nokey"])


def test_evaluate_compares_bundles_on_the_store_and_on_new_data(tiny_run, tmp_path):
    folder, _ = tiny_run
    report = json.loads((folder / "metrics.json").read_text())
    bundles = sorted(str(p) for p in (folder / "bundles").iterdir())
    assert len(bundles) == 8
    out = tmp_path / "eval.json"
    cmd = [
        sys.executable,
        str(ROOT / "evaluate.py"),
        "--bundles",
        *bundles,
        "--store",
        report["store"],
        "--split",
        "test",
        "--n-boot",
        "50",
        "--json",
        str(out),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    again = json.loads(out.read_text())
    # Bundles come from the single split: on its test records, the same numbers.
    split = report["split_scorers"]
    for name, row in split.items():
        assert again["scorers"][name]["auroc"] == pytest.approx(row["auroc"], abs=1e-6)
        assert again["scorers"][name]["ece"] == pytest.approx(row["ece"], abs=1e-6)
    # Paired against each confound-only bundle, as in an experiment.
    pairs = {(r["scorer"], r["baseline"]): r for r in again["paired"]}
    assert set(pairs) == {(r["scorer"], r["baseline"]) for r in report["paired"]}
    top = pairs["spectral_lr", "length"]
    assert top["diff"] == pytest.approx(split["spectral_lr"]["auroc"] - split["length"]["auroc"])
    assert "- baseline" in res.stdout
    data = folder.parents[2] / "data" / "arith.jsonl"
    fresh = subprocess.run(
        [
            sys.executable,
            str(ROOT / "evaluate.py"),
            "--bundles",
            *bundles[:2],
            "--data",
            str(data),
            "--n-boot",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "AUROC [95% CI]" in fresh.stdout


def test_every_shipped_experiment_config_loads():
    names = []
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if "base:" in path.read_text():
            names.append(load_experiment(path).name)
    assert {"gsm-perturb", "gsm-perturb-local", "champ", "generate", "tiny"} <= set(names)
    # Two levels of base: the per-head variant keeps default.yaml's capture settings.
    heads = load_experiment(ROOT / "configs" / "gsm-perturb-local-heads.yaml").capture
    assert (heads.heads, heads.span, heads.max_tokens) == ("each", "solution", 512)


def test_refit_bundles_carry_the_cross_validated_metrics(tiny_run):
    from probes.bundle import Scorer

    folder, _ = tiny_run
    report = json.loads((folder / "metrics.json").read_text())
    refits = sorted(p.name for p in (folder / "bundles-refit").iterdir())
    assert refits == sorted(report["scorers"])
    n = report["evaluation"]["records"]
    for name in ("spectral_lr", "threshold"):
        refit = Scorer.load(folder / "bundles-refit" / name)
        split = Scorer.load(folder / "bundles" / name)
        assert refit.meta["fit"]["fitted_on"] == f"all {n} records"
        assert "8-fold" in refit.meta["fit"]["metrics"]
        assert refit.meta["test_metrics"]["auroc"] == pytest.approx(
            report["scorers"][name]["auroc"]
        )
        assert split.meta["fit"]["fitted_on"].startswith("train split")
        assert split.meta["test_metrics"]["auroc"] == pytest.approx(
            report["split_scorers"][name]["auroc"]
        )
