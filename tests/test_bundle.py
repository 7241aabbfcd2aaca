"""Scorer bundles: round trip in a fresh process, refusal of bad bundles, no unpickling."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from probes.bundle import BundleError, Scorer, from_fitted
from probes.capture import SpectralCapture
from probes.config import CaptureConfig, ScorerSpec
from probes.data.records import Record
from probes.errors import RecordError
from probes.featuredata import SplitArrays
from probes.fitting import fit_scorer

TEXTS = [
    f"{a} + {b} = {a + b + (i % 2)}. The answer is {a + b + (i % 2)}."
    for i, (a, b) in enumerate(
        [(3, 4), (12, 5), (7, 7), (20, 13), (9, 1), (44, 2), (5, 5), (31, 8)] * 3
    )
]


@pytest.fixture(scope="module")
def fitted(tiny_llama):
    cfg = CaptureConfig(layers=(0, 1, 2, 3), probe_layer=None)
    capture = SpectralCapture(tiny_llama, cfg)
    ex = capture.extract(TEXTS)
    X = ex.values
    # One third valid: the logistic export must carry its prior correction.
    y = torch.tensor([i % 3 == 0 for i in range(len(TEXTS))], dtype=torch.long)
    split = SplitArrays(X, y, [str(i) for i in range(len(TEXTS))], [])
    out = {}
    for spec in (ScorerSpec("lr", "logistic", max_epochs=10), ScorerSpec("thr", "threshold")):
        f = fit_scorer(spec, ex.names, split, split)
        out[spec.name] = (f, from_fitted(f, tiny_llama.identity, cfg.to_dict()), ex)
    return out


@pytest.mark.parametrize("name", ["lr", "thr"])
def test_round_trip_in_a_fresh_process(tmp_path, fitted, name):
    f, scorer, ex = fitted[name]
    path = scorer.save(tmp_path / name)
    in_memory = scorer.predict_proba(TEXTS)
    # The fitted scorer itself (float32 training path) agrees with its export.
    np.testing.assert_allclose(in_memory[:, 1], f.predict_proba(ex.values.numpy())[:, 1], atol=1e-5)
    code = (
        "import json, sys, numpy as np; from probes.bundle import Scorer; "
        f"p = Scorer.load({str(path)!r}).predict_proba(json.loads(sys.stdin.read())); "
        "print(json.dumps(p[:, 1].tolist()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        check=True,
    )
    np.testing.assert_allclose(json.loads(out.stdout), in_memory[:, 1], atol=1e-6, rtol=0)
    assert set(np.unique(Scorer.load(path).predict(TEXTS))) <= {0, 1}


def _copy(tmp_path, scorer, mutate_meta=None, mutate_tensors=None, restamp=True):
    """A saved copy of ``scorer`` with its files changed; ``restamp`` records the changed
    files' checksums, so that the value checks (not only the checksums) are tested."""
    from probes.bundle import _meta_sha, _sha256

    path = scorer.save(tmp_path / "b")
    meta = json.loads((path / "scorer.json").read_text())
    tensors = load_file(path / "weights.safetensors")
    if mutate_tensors:
        mutate_tensors(tensors)
        save_file(tensors, path / "weights.safetensors")
    if mutate_meta:
        mutate_meta(meta)
    if restamp and isinstance(meta, dict):
        weights = _sha256((path / "weights.safetensors").read_bytes())
        meta["integrity"] = {"weights.safetensors": weights, "scorer.json": _meta_sha(meta)}
    (path / "scorer.json").write_text(json.dumps(meta))
    return path


def test_bad_bundles_are_refused(tmp_path, fitted, tiny_llama):
    _, scorer, _ = fitted["lr"]

    def drop_name(m):
        m["feature_names"] = m["feature_names"][:-1]

    with pytest.raises(BundleError, match=r"tensor 'mean' has shape \(\d+,\), expected \(\d+,\)"):
        Scorer.load(_copy(tmp_path / "1", scorer, mutate_meta=drop_name))

    def bad_shape(t):
        t["weight"] = torch.zeros(3)

    with pytest.raises(BundleError, match="tensor 'weight' has shape \\(3,\\)"):
        Scorer.load(_copy(tmp_path / "2", scorer, mutate_tensors=bad_shape))

    def future(m):
        m["format_version"] = 99

    with pytest.raises(BundleError, match="unknown format_version 99"):
        Scorer.load(_copy(tmp_path / "3", scorer, mutate_meta=future))

    good = _copy(tmp_path / "4", scorer)
    Scorer.load(good, model_identity=tiny_llama.identity)
    other = {**tiny_llama.identity, "weights_hash": "sha256:other"}
    with pytest.raises(BundleError, match="made with another model .*weights_hash"):
        Scorer.load(good, model_identity=other)


def test_renamed_features_are_refused_against_a_store(fitted):
    _, scorer, ex = fitted["lr"]
    names = [n.replace("eig_low", "eig_lo") for n in ex.names]
    with pytest.raises(BundleError, match="lack"):
        scorer.predict_proba_features(ex.values.numpy(), names)


def test_loading_never_unpickles(tmp_path, fitted):
    _, scorer, _ = fitted["lr"]
    path = scorer.save(tmp_path / "p")
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (path / "model.pkl").write_bytes(pickle.dumps(Boom()))
    Scorer.load(path)  # the pickle is ignored
    assert not marker.exists()
    # A pickle in place of the weights is refused, not executed.
    (path / "weights.safetensors").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(BundleError, match="weights.safetensors: damaged or replaced"):
        Scorer.load(path)
    assert not marker.exists()
    # Even with its checksum recorded, a pickle is refused as no safetensors file.
    restamped = _copy(tmp_path / "q", scorer, mutate_tensors=lambda t: None)
    (restamped / "weights.safetensors").write_bytes(pickle.dumps(Boom()))
    meta = json.loads((restamped / "scorer.json").read_text())
    from probes.bundle import _meta_sha, _sha256

    meta["integrity"]["weights.safetensors"] = _sha256(pickle.dumps(Boom()))
    meta["integrity"]["scorer.json"] = _meta_sha(meta)
    (restamped / "scorer.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="not a safetensors file"):
        Scorer.load(restamped)
    assert not marker.exists()


def test_probes_score_skips_a_malformed_line_and_reports_it(tmp_path, fitted, capsys):
    from probes.cli import main

    _, scorer, _ = fitted["lr"]
    bundle = scorer.save(tmp_path / "bundle")
    lines = [json.dumps({"id": f"r{i}", "text": t}) for i, t in enumerate(TEXTS[:4])]
    lines.insert(2, '{"id": "broken", "text": ')
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["score", "--scorer", str(bundle), "--input", str(src), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"probes score: skipped {src}:3: malformed JSON" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["r0", "r1", "r2", "r3"]
    want = scorer.predict_proba(TEXTS[:4])[:, 1]
    np.testing.assert_allclose([r["p_valid"] for r in rows], want, atol=1e-9)
    assert all(r["decision"] in (0, 1) for r in rows)
    # --strict stops at the bad line and writes nothing.
    strict_out = tmp_path / "strict.jsonl"
    assert (
        main(
            [
                "score",
                "--scorer",
                str(bundle),
                "--input",
                str(src),
                "--output",
                str(strict_out),
                "--strict",
            ]
        )
        == 1
    )
    assert f"{src}:3:" in capsys.readouterr().err and not strict_out.exists()


def test_export_copies_a_bundle_from_results(tmp_path, fitted, capsys):
    from probes.cli import main

    _, scorer, _ = fitted["thr"]
    results = tmp_path / "results"
    scorer.save(results / "run1" / "bundles" / "thr")
    (results / "run1" / "metrics.json").write_text("{}")
    (results / "latest").symlink_to("run1")

    def export(name: str, out: str) -> int:
        args = ["export", "--results", str(results), "--scorer", name, "--out", str(tmp_path / out)]
        return main(args)

    assert export("thr", "x") == 0
    assert Scorer.load(tmp_path / "x").meta == scorer.meta
    assert export("nope", "y") == 1
    assert "available: ['thr']" in capsys.readouterr().err


def test_solution_span_scorers_find_the_solution_in_record_texts(tiny_llama, fitted):
    _, scorer, _ = fitted["lr"]
    meta = {**scorer.meta, "capture": {**scorer.meta["capture"], "span": "solution"}}
    solution_scorer = Scorer(meta, scorer.tensors)
    texts = [f"Problem: {t.split('=')[0]}?\nSolution: {t}" for t in TEXTS[:3]]
    records = [
        Record(id=str(i), label=None, group=str(i), problem=t.split("=")[0] + "?", solution=t)
        for i, t in enumerate(TEXTS[:3])
    ]
    np.testing.assert_allclose(
        solution_scorer.predict_proba(texts), solution_scorer.predict_proba(records)
    )
    with pytest.raises(RecordError, match="text has no .* marker"):
        solution_scorer.predict_proba(TEXTS[:1])
