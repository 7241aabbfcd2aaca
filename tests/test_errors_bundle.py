"""Bundles: checksummed files, every value checked at load, named errors instead of silent
wrong scores."""

from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from probes.bundle import BundleError, Scorer, _meta_sha, _sha256


def copy(bundle, tmp_path, meta_fn=None, tensor_fn=None, restamp=True, raw_meta=None):
    """A copy of ``bundle`` with changed files; ``restamp`` records their new checksums, so
    that the value checks, not only the checksums, are tested."""
    path = tmp_path / "b"
    shutil.copytree(bundle, path)
    meta = json.loads((path / "scorer.json").read_text())
    if tensor_fn:
        tensors = load_file(path / "weights.safetensors")
        tensor_fn(tensors)
        save_file(tensors, path / "weights.safetensors")
    if meta_fn:
        meta_fn(meta)
    if restamp:
        meta["integrity"] = {
            "weights.safetensors": _sha256((path / "weights.safetensors").read_bytes()),
            "scorer.json": _meta_sha(meta),
        }
    (path / "scorer.json").write_text(raw_meta if raw_meta is not None else json.dumps(meta))
    return path


def setter(key, value):
    def fn(meta):
        meta[key] = value

    return fn


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("temperature", -1, "'temperature' must be a finite number > 0"),
        ("temperature", 0, "'temperature' must be a finite number > 0"),
        ("temperature", "1.0", "'temperature' must be a finite number > 0, got '1.0'"),
        ("temperature", True, "'temperature' must be a finite number"),
        ("threshold", float("nan"), "'threshold' must be a finite number, got nan"),
        ("threshold", 3.0, "a probability threshold must be in \\[0, 1\\]"),
        ("decision", "vote", "decision must be 'probability' or 'feature'"),
        ("capture", {"heads": "max"}, "scorer.json option 'capture.heads'"),
    ],
)
def test_bad_values_are_refused_even_with_matching_checksums(
    tmp_path, solution_bundle, key, value, message
):
    with pytest.raises(BundleError, match=message):
        Scorer.load(copy(solution_bundle, tmp_path, setter(key, value)))


def test_a_missing_model_revision_and_a_json_array_are_named(tmp_path, solution_bundle):
    def drop(meta):
        del meta["model"]["revision"]

    with pytest.raises(BundleError, match="model.revision is missing"):
        Scorer.load(copy(solution_bundle, tmp_path / "1", drop))
    with pytest.raises(BundleError, match="scorer.json: expected a JSON object, got list"):
        Scorer.load(copy(solution_bundle, tmp_path / "2", restamp=False, raw_meta="[1, 2]"))


def test_an_edited_scorer_json_is_caught_by_its_checksum(tmp_path, solution_bundle):
    def reverse(meta):
        meta["feature_names"] = meta["feature_names"][::-1]

    with pytest.raises(BundleError, match="scorer.json: changed after export"):
        Scorer.load(copy(solution_bundle, tmp_path, reverse, restamp=False))


def test_flipped_weight_bytes_are_caught(tmp_path, solution_bundle):
    path = copy(solution_bundle, tmp_path, restamp=False)
    weights = path / "weights.safetensors"
    raw = bytearray(weights.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    for i in range(8 + n, 8 + n + 24):
        raw[i] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="weights.safetensors: damaged or replaced"):
        Scorer.load(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t["weight"].__setitem__(0, float("nan")), "'weight' must hold finite floats"),
        (lambda t: t["std"].__setitem__(0, 0.0), "'std' must be > 0"),
        (lambda t: t.__setitem__("bias", torch.zeros(1, dtype=torch.long)), "finite floats"),
    ],
)
def test_non_finite_or_degenerate_weights_are_refused(tmp_path, solution_bundle, change, message):
    with pytest.raises(BundleError, match=message):
        Scorer.load(copy(solution_bundle, tmp_path, tensor_fn=change))


def test_duplicate_feature_names_are_refused(tmp_path, solution_bundle):
    def dup(meta):
        meta["feature_names"][1] = meta["feature_names"][0]

    with pytest.raises(BundleError, match="unique names"):
        Scorer.load(copy(solution_bundle, tmp_path, dup))


def test_an_older_bundle_without_checksums_is_refused_with_a_hint(tmp_path, solution_bundle):
    with pytest.raises(BundleError, match="made before bundles had checksums"):
        Scorer.load(copy(solution_bundle, tmp_path, setter("format_version", 1)))


def test_scorer_json_is_strict_json_with_null_for_nan(tmp_path, solution_bundle):
    scorer = Scorer.load(solution_bundle)
    scorer.meta["test_metrics"] = {"auroc": float("nan")}
    path = scorer.save(tmp_path / "nan")

    def refuse(token):
        raise AssertionError(f"bare {token} in scorer.json")

    meta = json.loads((path / "scorer.json").read_text(), parse_constant=refuse)
    assert meta["test_metrics"] == {"auroc": None, "auroc_reason": "not a number"}
    Scorer.load(path)
