"""``train.py`` under 2-process CPU DDP: the extraction is shared, everything else is done once.

The driver below runs ``probes train`` (what ``train.py`` runs) and logs, from every
process, each write of ``splits.json``, each W&B run it starts and each bundle it saves.
Lightning's launcher starts the second process by running the same command line again, so
the wrapping holds there too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probes.stepeval import STEP_SCORERS
from probes.store import FeatureStore
from tests.stores import assert_same_store

ROOT = Path(__file__).parents[1]

DRIVER = """
import json, os, sys
sys.path.insert(0, {root!r})
log = {log!r}

def note(what):
    rank = os.environ.get("LOCAL_RANK", "0")
    with open(log, "a") as f:
        f.write(json.dumps({{"rank": rank, "pid": os.getpid(), "what": what}}) + "\\n")

import probes.data.datamodule as dm
import probes.bundle as bundle
import wandb
save_splits, save, init = dm.save_splits, bundle.Scorer.save, wandb.init
dm.save_splits = lambda *a, **k: (note("splits"), save_splits(*a, **k))[1]
bundle.Scorer.save = lambda self, *a, **k: (note("bundle"), save(self, *a, **k))[1]
wandb.init = lambda *a, **k: (note("wandb"), init(*a, **k))[1]

from probes.cli import main
sys.exit(main(["train", *sys.argv[1:]], prog="train.py"))
"""


def _train(tmp: Path, devices: int) -> tuple[Path, list[dict]]:
    log = tmp / "writes.log"
    driver = tmp / "driver.py"
    driver.write_text(DRIVER.format(root=str(ROOT), log=str(log)))
    overrides = {
        "results_dir": tmp / "results",
        "stores_dir": tmp / "stores",
        "data.source": tmp / "data" / "arith.jsonl",
        "trainer.devices": devices,
        "trainer.strategy": "ddp" if devices > 1 else "auto",
        "model.device": "cpu",
        "batch_size": 1,  # the same forward pass per text in both runs: equal features
        "eval.cv": 0,
        "eval.refit": False,
        "n_boot": 20,
        "scorers": json.dumps(
            [
                {"name": "spectral_lr", "kind": "logistic", "max_epochs": 10},
                {"name": "length", "kind": "logistic", "select": ["confound/n_tokens_full"]},
            ]
        ),
    }
    cmd = [sys.executable, str(driver), "--config", str(ROOT / "configs" / "tiny.yaml")]
    for key, value in overrides.items():
        cmd.append(f"{key}={value}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    writes = [json.loads(line) for line in log.read_text().splitlines()]
    return tmp, writes


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    return (
        _train(tmp_path_factory.mktemp("one"), 1),
        _train(tmp_path_factory.mktemp("two"), 2),
    )


def test_ddp_experiment_writes_once_and_equals_one_process(one_and_two):
    (one, one_writes), (two, two_writes) = one_and_two
    # Both processes extracted: the store holds shards of rank 0 and rank 1.
    (store_path,) = (two / "stores").iterdir()
    ranks = {p.name.split("-r")[1][:3] for p in (store_path / "shards").glob("*.safetensors")}
    assert ranks == {"000", "001"}
    for writes in (one_writes, two_writes):
        assert {w["rank"] for w in writes} == {"0"}, writes  # nothing from rank 1
        kinds = [w["what"] for w in writes]
        assert kinds.count("splits") == 1 and kinds.count("wandb") == 1
        # One per scorer, and one per logistic step scorer (the tiny config has steps).
        step_bundles = sum(s.kind == "logistic" for s in STEP_SCORERS)
        assert kinds.count("bundle") == 2 + step_bundles
    assert len(list(two.rglob("offline-run-*"))) == 1
    assert len(list((two / "results" / "tiny").iterdir())) == 2  # one run folder + latest
    (one_store,) = (one / "stores").iterdir()
    assert json.loads((store_path / "splits.json").read_text()) == json.loads(
        (one_store / "splits.json").read_text()
    )
    assert_same_store(FeatureStore.open(store_path), FeatureStore.open(one_store), n=80)
    metrics = [
        json.loads((d / "results" / "tiny" / "latest" / "metrics.json").read_text())["scorers"]
        for d in (one, two)
    ]
    for name in ("spectral_lr", "length"):
        for key in ("auroc", "ece", "brier"):
            assert metrics[1][name][key] == pytest.approx(metrics[0][name][key], abs=1e-6)
    for name in ("spectral_lr", "length"):
        a = json.loads((one / "results/tiny/latest/bundles" / name / "scorer.json").read_text())
        b = json.loads((two / "results/tiny/latest/bundles" / name / "scorer.json").read_text())
        assert a["feature_names"] == b["feature_names"]
