"""The benchmark script runs end to end (on a tiny model) and its ratios add up.

Speed itself is never asserted here: timings live in benchmarks/, measured against a
baseline of the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_extract_writes_ratios_and_markdown(tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_extract.py"),
        *("--model", "tiny-llama", "--tokens", "12", "20", "--repeats", "2"),
        *("--variants", "forward", "naive_per_head", "streaming"),
        *("--load-tokens", "12", "--json", str(out), "--markdown", str(md)),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = {(r["tokens"], r["variant"]): r for r in report["results"]}
    variants = ("forward", "naive_per_head", "streaming")
    assert set(rows) == {(n, v) for n in (12, 20) for v in variants}
    for (n, _), r in rows.items():
        assert r["runs"] >= 1 and r["seconds"] > 0 and r["peak_rss_mb"] > 0
        assert r["forward_seconds_same_process"] > 0
        naive = rows[(n, "naive_per_head")]
        assert r["ratio_to_naive_per_head"] == r["ratio_to_forward"] / naive["ratio_to_forward"]
        assert r["memory_ratio_to_naive_per_head"] == r["peak_rss_mb"] / naive["peak_rss_mb"]
    assert all(rows[(n, "forward")]["ratio_to_forward"] == 1.0 for n in (12, 20))
    s = rows[(20, "streaming")]
    assert s["runs"] == 2  # two pairs fit the default budget at this size
    goal, naive = report["goals"]["20"], rows[(20, "naive_per_head")]
    assert goal["streaming_x_forward"] == s["ratio_to_forward"]
    assert (
        goal["naive_per_head_over_streaming"] == naive["ratio_to_forward"] / s["ratio_to_forward"]
    )
    assert goal["naive_per_head_over_streaming_heads"] is None  # not run
    assert {r["variant"] for r in report["under_load"]} == {"streaming", "streaming_eig2threads"}
    assert report["failed"] == []
    assert "| 20 | streaming |" in md.read_text()


def test_bench_extract_refuses_an_unknown_variant():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_extract.py"), "--variants", "fast"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "unknown variants ['fast']" in run.stderr


def test_bench_fit_times_both_thread_settings(tmp_path):
    out = tmp_path / "fit.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_fit.py"),
        *("--records", "60", "--features", "20", "--folds", "2", "--json", str(out)),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(out.read_text())["results"]
    assert [r["load"] for r in rows] == ["idle", "one core busy"]
    for r in rows:
        assert r["one_thread_s"] > 0 and r["ratio"] == r["default_threads_s"] / r["one_thread_s"]


def test_bench_confounds_compares_both_paths_on_the_same_text(tmp_path):
    out = tmp_path / "conf.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_confounds.py"),
        *("--vocab", "4096", "--tokens", "64", "--json", str(out)),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    full, blocks = json.loads(out.read_text())["results"]
    assert (full["variant"], blocks["variant"]) == ("full_logits", "head_blocks")
    assert full["tokens"] == blocks["tokens"] == 64
    assert abs(full["logprob"] - blocks["logprob"]) < 1e-5  # the same confound either way
    assert full["extraction_rss_ratio_to_full"] == 1.0


@pytest.mark.integration
def test_bench_eigen_times_both_solvers_on_the_same_graphs(tmp_path):
    out = tmp_path / "eigen.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_eigen.py"),
        *("--tokens", "256", "300", "--repeats", "1", "--json", str(out)),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["tokens"] for r in report["rows"]] == [256, 300]
    for r in report["rows"]:
        assert r["device"] == "cpu" and r["graphs"] == 36  # 4 layers x 9 heads
        assert r["speedup"] == r["dense_ms"] / r["mixed_ms"]
        assert r["max_abs_error"] <= 1e-6  # the stated bound, on real graphs
    assert report["exponents"]["dense"] is not None


def test_bench_steps_times_every_variant_against_the_plain_capture(tmp_path):
    out = tmp_path / "steps.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_steps.py"),
        *("--model", "tiny-llama", "--records", "gsm-perturb", "--n", "4", "--repeats", "1"),
        *("--step-layers", "1", "--json", str(out)),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = {r["variant"]: r for r in report["results"]}
    assert rows["no_steps"]["ratio"] == 1.0 and rows["no_steps"]["step_layers"] == 0
    assert rows["steps_few_layers"]["step_layers"] == 1
    assert rows["steps_all_layers"]["step_layers"] == report["layers"]
    for r in rows.values():
        assert r["ratio"] == r["seconds_per_record"] / rows["no_steps"]["seconds_per_record"]
    assert report["records"] == 4 and report["steps"] > 4
