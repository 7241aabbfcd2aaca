"""The whole calibration experiment on the tiny config, as CI runs it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probes.bundle import Scorer
from probes.config import ConfigError, load_experiment
from probes.data import load_records, write_jsonl
from probes.data.splits import SPLITS
from probes.stepeval import BASELINES, PAIRED, STEP_SCORERS, store_step_arrays
from probes.steps import Step, wrong_step
from probes.store import FeatureStore
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
        if a["name"].endswith("-refit") or a["name"].startswith("step-scorer-"):
            continue
        assert a["metadata"]["store"] == "store-tiny"
        want = report["split_scorers"][name]["auroc"]
        assert a["metadata"]["test_metrics"]["auroc"] == pytest.approx(want)
        assert ("best" in a["aliases"]) == (name == best), (name, a["aliases"])


def test_step_localisation_is_evaluated_logged_and_exported(tiny_run):
    folder, stdout = tiny_run
    steps = json.loads((folder / "metrics.json").read_text())["steps"]
    assert set(steps["scorers"]) == set(steps["split_scorers"]) == {s.name for s in STEP_SCORERS}
    for row in [*steps["scorers"].values(), *steps["split_scorers"].values()]:
        for m in PAIRED:
            assert 0 <= row[f"{m}_lo"] <= row[f"{m}_hi"] <= 1, (m, row)
    assert (
        steps["evaluation"].startswith("step evaluation: 8-fold") and steps["evaluation"] in stdout
    )
    assert set(steps["paired"]) == set(PAIRED)
    for row in steps["paired"].values():
        assert row["baseline"] in BASELINES and row["lo"] <= row["hi"]
    rows = list(csv.DictReader(open(folder / "step_predictions.csv")))
    assert len({r["id"] for r in rows}) == 80 and {r["label"] for r in rows} <= {"-1", "0", "1"}
    assert {r["fold"] for r in rows} == {str(k) for k in range(8)}
    assert sorted(p.name for p in (folder / "bundles-steps").iterdir()) == sorted(
        s.name for s in STEP_SCORERS if s.kind == "logistic"
    )
    (run_dir,) = (folder / "wandb").glob("offline-run-*")
    table = offline_table(run_dir, "step_metrics")
    assert len(table["data"]) == len(STEP_SCORERS)
    summary = offline_summary(run_dir)
    top1 = steps["scorers"]["step_spectral"]["top1"]
    assert summary["steps/cv/step_spectral/top1"] == pytest.approx(top1)
    artifacts = {a["name"] for a in offline_artifacts(run_dir)}
    assert "step-scorer-tiny-step_spectral" in artifacts


def test_step_bundle_round_trip_scores_steps_and_shows_them(tiny_run, tmp_path):
    folder, _ = tiny_run
    root = folder.parents[2]
    cli = [sys.executable, "-m", "probes.cli"]
    out = subprocess.run(
        [
            *cli,
            "export",
            "--results",
            str(folder),
            "--scorer",
            "step_spectral",
            "--out",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    bundle = Scorer.load(tmp_path / "b", device="cpu")
    assert bundle.is_step and bundle.meta["capture"]["steps"] == "lines"
    # The stored step features, scored by the bundle, against a fresh pass over the texts.
    (store_dir,) = (root / "stores").iterdir()
    data = FeatureStore.open(store_dir).read()
    arrays, names = store_step_arrays(data)
    test = [i for i, s in enumerate(data.splits) if s == "test"][:6]
    records = {r.id: r for r in load_records(root / "data" / "arith.jsonl")}
    chosen = [records[data.ids[i]] for i in test]
    scored = bundle.score(chosen)
    for k, i in enumerate(test):
        rows = arrays.record == i
        z = bundle.step_logit_features(arrays.X[rows], names)
        got = np.array([s["p_wrong"] for s in scored.steps[k]])
        np.testing.assert_allclose(got, 1 / (1 + np.exp(-z)), rtol=1e-4, atol=1e-5)
        assert [[s["start"], s["end"]] for s in scored.steps[k]] == arrays.spans[rows, :2].tolist()
        want = bundle.solution_proba_from_steps([z])[0]
        assert scored.p_valid[k] == pytest.approx(want, rel=1e-4)
    # probes score --steps writes the same.
    src = tmp_path / "in.jsonl"
    write_jsonl(chosen, src)
    out = subprocess.run(
        [
            *cli,
            "score",
            "--scorer",
            str(tmp_path / "b"),
            "--input",
            str(src),
            "--output",
            str(tmp_path / "out.jsonl"),
            "--steps",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    for k, line in enumerate(lines):
        assert line["p_valid"] == pytest.approx(scored.p_valid[k])
        assert [s["p_wrong"] for s in line["steps"]] == pytest.approx(
            [s["p_wrong"] for s in scored.steps[k]]
        )
        assert line["first_flagged"] == scored.first_flagged[k]
    # A solution scorer has no steps to write.
    out = subprocess.run(
        [
            *cli,
            "score",
            "--scorer",
            str(folder / "bundles" / "spectral_lr"),
            "--input",
            str(src),
            "--output",
            str(tmp_path / "o2.jsonl"),
            "--steps",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "per-step output needs a step scorer" in out.stderr
    # probes show: one page, opened in a real browser.
    page = tmp_path / "steps.html"
    out = subprocess.run(
        [
            *cli,
            "show",
            "--scorer",
            str(tmp_path / "b"),
            "--input",
            str(src),
            "--out",
            str(page),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    check_page_in_browser(page, chosen, scored, bundle)


def check_page_in_browser(page: Path, records, scored, bundle) -> None:
    """The page as a headless Chromium renders it: every record, every step's text and
    shade, the labelled and flagged steps, the per-layer curve; nothing fetched."""
    pytest.importorskip("PyQt6.QtWebEngineWidgets", reason="the browser test needs PyQt6-WebEngine")
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "browser.py"), str(page)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["external"] == 0 and seen["requests"] == []
    assert [s["record"] for s in seen["sections"]] == [r.id for r in records]
    layers = sorted({int(n.split("/L")[1][:2]) for n in bundle.feature_names if "/L" in n})
    for k, (sec, rec) in enumerate(zip(seen["sections"], records, strict=True)):
        solution = rec.full_text[rec.solution_start :]
        assert sec["solution_text"] == solution  # the spans cover the text, nothing lost
        steps = scored.steps[k]
        assert [s["text"] for s in sec["steps"]] == [solution[s["start"] : s["end"]] for s in steps]
        alphas = [float(s["background"].rsplit(",", 1)[1].rstrip(")")) for s in sec["steps"]]
        p = [s["p_wrong"] for s in steps]
        # The browser keeps an alpha in 8 bits (steps of 1/255).
        assert alphas == pytest.approx([0.08 + 0.72 * x for x in p], abs=1 / 255 + 1e-3)
        assert all(s["box"][0] > 0 and s["box"][1] > 0 for s in sec["steps"])  # rendered
        wrong = wrong_step(rec, [Step(i, s["start"], s["end"]) for i, s in enumerate(steps)])
        labelled = [s["step"] for s in sec["steps"] if "labelled" in s["classes"]]
        assert labelled == ([] if wrong is None else [wrong])
        assert sec["labelled"] == ("none" if wrong is None else str(wrong))
        flagged = [s["step"] for s in sec["steps"] if "flagged" in s["classes"]]
        f = scored.first_flagged[k]
        assert flagged == ([] if f is None else [f])
        top = [s["step"] for s in sec["steps"] if "top" in s["classes"]]
        assert top == [int(np.argmax(p))]
        assert sec["curve"]["layers"] == layers and sec["curve"]["points"] == len(layers)
        assert sec["curve"]["box"][0] > 0


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
