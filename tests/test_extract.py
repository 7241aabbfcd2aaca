"""Extraction into a feature store: resume after SIGKILL, 2-process DDP, refusal of a store
made with other settings, and the FeatureDataModule on top."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from probes.config import CaptureConfig, DataConfig, ExtractConfig, ModelConfig
from probes.data import BUILDERS, write_jsonl
from probes.extract import extract
from probes.featuredata import FeatureDataModule, matches, select_features
from probes.store import FeatureStore, StoreMismatchError
from tests.stores import assert_same_store

CAPTURE = {
    "families": "all",
    "heads": "each",
    "span": "solution",
    "max_tokens": 400,
    "steps": "lines",
}


@pytest.fixture(scope="module")
def records_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "gsm.jsonl"
    write_jsonl(BUILDERS["gsm-perturb"](seed=0, n=40), path)
    return path


def config_file(tmp_path, records_file, **extra) -> str:
    lines = [
        f"data: {{source: {records_file}}}",
        "model: {name_or_path: tiny-llama}",
        "capture: {families: all, heads: each, span: solution, max_tokens: 400, steps: lines}",
        "batch_size: 2",
        "shard_size: 4",
    ] + [f"{k}: {v}" for k, v in extra.items()]
    path = tmp_path / "extract.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run_cli(args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "probes.cli", *args], capture_output=True, text=True, **kw
    )


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory, records_file):
    """One uninterrupted single-process run, in process."""
    root = tmp_path_factory.mktemp("ref")
    cfg = ExtractConfig(
        data=DataConfig(source=str(records_file)),
        model=ModelConfig("tiny-llama"),
        capture=CaptureConfig(**CAPTURE),
        store=str(root / "store"),
        batch_size=2,
        shard_size=4,
    )
    result = extract(cfg)
    assert (result.extracted, result.already_present) == (80, 0)
    return result.store


def test_resume_after_sigkill_loses_and_duplicates_nothing(tmp_path, records_file, reference_store):
    store = tmp_path / "store"
    cfg = config_file(tmp_path, records_file)
    proc = subprocess.Popen(
        [sys.executable, "-m", "probes.cli", "extract", "--config", cfg, f"store={store}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((store / "shards").glob("*.safetensors"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = FeatureStore.open(store).done_ids()
    assert 0 < len(partial) < 80, "the kill must land part-way through"
    rerun = run_cli(["extract", "--config", cfg, f"store={store}"], timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(partial)} already present, {80 - len(partial)} extracted now" in rerun.stdout
    assert "spectra: " in rerun.stdout and "solved densely after failing" in rerun.stdout
    assert "step table: " in rerun.stdout and "labelled first wrong steps" in rerun.stdout
    assert_same_store(FeatureStore.open(store), reference_store, n=80)


def test_two_process_ddp_equals_one_process(tmp_path, records_file, reference_store):
    store = tmp_path / "ddp"
    cfg = config_file(tmp_path, records_file)
    out = run_cli(
        ["extract", "--config", cfg, f"store={store}", "trainer.devices=2", "trainer.strategy=ddp"],
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    shards = sorted(p.name for p in (store / "shards").glob("*.safetensors"))
    assert {name.split("-r")[1][:3] for name in shards} == {"000", "001"}  # both ranks wrote
    assert_same_store(FeatureStore.open(store), reference_store, n=80)
    assert out.stdout.count("80 extracted now") == 1  # one summary, from rank 0


def test_store_with_other_settings_is_refused(reference_store):
    manifest = dict(FeatureStore.open(reference_store.path).manifest)
    manifest.pop("format_version")
    manifest["capture"] = {**manifest["capture"], "heads": "mean"}
    with pytest.raises(StoreMismatchError, match="capture.heads: 'each' -> 'mean'"):
        FeatureStore(reference_store.path, manifest)


def test_rerun_with_a_changed_capture_option_is_refused(tmp_path, records_file, reference_store):
    cfg = config_file(tmp_path, records_file)
    out = run_cli(
        ["extract", "--config", cfg, f"store={reference_store.path}", "capture.heads=mean"]
    )
    assert out.returncode == 1
    assert (
        "was made with other settings" in out.stderr
        and "capture.heads: 'each' -> 'mean'" in out.stderr
    )


def test_feature_datamodule_serves_splits_and_selects_by_pattern(reference_store):
    data = reference_store.read()
    dm = FeatureDataModule(reference_store.path, select=["fiedler/*", "confound/n_tokens"])
    dm.setup()
    assert dm.names[0].startswith("fiedler/L00/H00") and dm.names[-1] == "confound/n_tokens"
    assert all(n.startswith("fiedler/") for n in dm.names[:-1])
    total = 0
    for split in ("train", "calib", "test"):
        a = dm.arrays(split)
        total += len(a.ids)
        for row, rid in enumerate(a.ids[:3]):
            i = data.ids.index(rid)
            want = data.values[i, [data.names.index(n) for n in dm.names]]
            assert torch.equal(a.X[row], want) and int(a.y[row]) == int(data.labels[i])
    assert dm.n_skipped == int(data.skipped.sum()) > 0  # solutions cut by max_tokens
    assert total == 80 - dm.n_skipped
    X, y = next(iter(dm.train_dataloader()))
    assert X.dtype == torch.float32 and X.shape[1] == len(dm.names) and y.ndim == 1


def test_patterns():
    assert matches("lapeig/L12/H03/k0", "*/L1[0-9]") and matches("fiedler/L12", "*/L1[0-9]")
    assert not matches("fiedler/L02", "*/L1[0-9]")
    assert select_features(["a/L00", "b/L00"], None) == [0, 1]
    with pytest.raises(ValueError, match="pattern 'zzz/\\*' matches no feature"):
        select_features(["a/L00"], ["zzz/*"])


def test_store_comparison_catches_a_misplaced_row_and_a_moved_value(reference_store):
    """The tolerance of ``assert_same_store`` is loose enough for float32 noise, not for
    a row written under another record's id or a value off by 1% of its column."""
    from dataclasses import replace
    from types import SimpleNamespace

    data = reference_store.read()
    assert_same_store(SimpleNamespace(read=lambda: data), reference_store, n=80)
    live = [i for i in range(80) if not data.skipped[i]]
    a, b = live[0], next(i for i in live if data.groups[i] != data.groups[live[0]])
    swapped = data.values.clone()
    swapped[[a, b]] = swapped[[b, a]]
    moved = data.values.clone()
    col = data.names.index("fiedler/L01/H02")
    moved[a, col] += 0.01 * moved[:, col].nan_to_num(0).abs().max()
    for values, message in ((swapped, "against|nearer another"), (moved, "fiedler/L01/H02")):
        fake = SimpleNamespace(read=lambda v=values: replace(data, values=v))
        with pytest.raises(AssertionError, match=message):
            assert_same_store(fake, reference_store)


def test_manifest_and_summary_count_the_solved_graphs(tmp_path, records_file, reference_store):
    """Every graph of the reference run is counted in the manifest with the stated bound;
    a rerun that solves nothing adds nothing."""
    data = reference_store.read()
    graphs = 4 * 4 * int((~data.skipped).sum())  # tiny-llama: 4 layers x 4 heads per text
    solver = FeatureStore.open(reference_store.path).manifest["solver"]
    assert solver == {"graphs": graphs, "refined": 0, "fallbacks": 0, "accuracy": 1e-6}
    cfg = config_file(tmp_path, records_file)
    out = run_cli(["extract", "--config", cfg, f"store={reference_store.path}"])
    assert out.returncode == 0, out.stderr
    assert FeatureStore.open(reference_store.path).manifest["solver"] == solver


def test_solver_workers_run_lapack_on_one_thread(tiny_llama, monkeypatch):
    """Every LAPACK call of the mixed solver, in every solver worker, runs on one OpenBLAS
    thread. threadpoolctl lets only one thread change OpenBLAS's setting, so the workers'
    own limits are ignored once another thread has set one (here the main thread, as in any
    process that solved a spectrum there before): the capture must hold it itself."""
    import scipy.linalg  # noqa: F401  (SciPy's OpenBLAS, the one the solver calls)
    from threadpoolctl import threadpool_info

    from probes import eigen
    from probes.capture import SpectralCapture
    from probes.threads import lapack_threads

    def blas_threads() -> frozenset[int]:
        return frozenset(d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas")

    with lapack_threads(1):  # this thread now controls OpenBLAS's limit
        pass
    before = blas_threads()
    real, seen = eigen._lapack_pairs, []

    def watched(L, idx):
        seen.append(blas_threads())
        return real(L, idx)

    monkeypatch.setattr(eigen, "_lapack_pairs", watched)
    texts = ["Problem: 2 + 3 = ?\nSolution: 2 + 3 = 5. The answer is 5.\n" * 3] * 2
    cfg = CaptureConfig(eig_method="mixed", heads="each")
    SpectralCapture(tiny_llama, cfg, eig_workers=2).extract(texts)
    assert seen and set(seen) == {frozenset({1})}
    assert blas_threads() == before


def test_uncertified_spectra_are_solved_densely_and_counted(tiny_llama, monkeypatch):
    """With the mixed solver forced and its float32 vectors spoiled, every graph falls back
    to the dense solver: the features equal the dense ones and the count says so."""
    from probes import eigen
    from probes.capture import SpectralCapture

    real = eigen._float32_pairs

    def spoiled(L, idx):
        mu, V, ok = real(L, idx)
        return mu, V + 1e-3 * torch.randn(V.shape, generator=torch.Generator().manual_seed(0)), ok

    texts = ["Problem: 2 + 3 = ?\nSolution: 2 + 3 = 5. The answer is 5.\n" * 3]
    dense = SpectralCapture(tiny_llama, CaptureConfig(eig_method="dense")).extract(texts)
    monkeypatch.setattr(eigen, "_float32_pairs", spoiled)
    cap = SpectralCapture(tiny_llama, CaptureConfig(eig_method="mixed"))
    mixed = cap.extract(texts)
    assert cap.solver_counts == {"graphs": 4, "refined": 0, "fallbacks": 4}  # 4 layers, mean
    torch.testing.assert_close(mixed.values, dense.values, rtol=0, atol=1e-12, equal_nan=True)
