"""Feature-store integrity: checksummed shards, named damage with a repair command, a lock
against concurrent extractions, and repair of a store wedged by an older version."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from probes.config import CaptureConfig, DataConfig, ExtractConfig, ModelConfig
from probes.data import BUILDERS, write_jsonl
from probes.errors import StoreError
from probes.extract import extract
from probes.store import FeatureStore
from tests.stores import assert_same_store


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    data = write_jsonl(BUILDERS["arith-perturb"](n=12, seed=0), root / "arith.jsonl")
    cfg = ExtractConfig(
        data=DataConfig(source=str(data)),
        model=ModelConfig("tiny-llama"),
        capture=CaptureConfig(layers=(0, 1), max_tokens=384, steps="lines"),
        store=str(root / "reference"),
        batch_size=4,
        shard_size=4,
    )
    result = extract(cfg)
    assert result.extracted == 24
    return cfg, result.store


def copy_store(setup, tmp_path):
    cfg, ref = setup
    path = tmp_path / "store"
    shutil.copytree(ref.path, path, ignore=shutil.ignore_patterns(".lock"))
    return replace_store(cfg, path), path


def replace_store(cfg, path):
    from dataclasses import replace

    return replace(cfg, store=str(path))


def data_offset(path) -> int:
    """Where a safetensors file's tensor bytes start (8-byte length + JSON header)."""
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + n


def assert_like_reference(path, ref):
    assert_same_store(FeatureStore.open(path), ref, n=24)


def test_flipped_tensor_bytes_are_found_and_repaired(setup, tmp_path):
    cfg, ref = setup
    cfg, path = copy_store(setup, tmp_path)
    shard = sorted((path / "shards").glob("*.safetensors"))[1]
    raw = bytearray(shard.read_bytes())
    start = data_offset(shard)
    for i in range(start + 16, start + 76):  # 60 bytes of tensor data
        raw[i] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=f"{shard.name}: damaged shard .*sha256.*--repair"):
        FeatureStore.open(path).read()
    with pytest.raises(StoreError, match="--repair"):
        extract(cfg)  # no "already present": the damage stops it
    result = extract(cfg, repair=True)
    assert (result.already_present, result.extracted) == (20, 4)
    assert (path / "quarantine" / shard.name).is_file()  # set aside, not deleted
    assert_like_reference(path, ref)


def test_a_flipped_label_in_a_shard_header_is_found(setup, tmp_path):
    _, path = copy_store(setup, tmp_path)
    shard = sorted((path / "shards").glob("*.safetensors"))[0]
    with safe_open(shard, framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    labels = json.loads(meta["labels"])
    labels[0] = 1 - labels[0]
    meta["labels"] = json.dumps(labels)  # same length: only the checksum can tell
    save_file(tensors, shard, metadata=meta)
    with pytest.raises(StoreError, match=f"{shard.name}: damaged shard"):
        FeatureStore.open(path).read()


def test_truncated_and_foreign_files_are_named(setup, tmp_path):
    _, path = copy_store(setup, tmp_path)
    shard = sorted((path / "shards").glob("*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(StoreError, match=f"{shard}: damaged shard, cannot be read"):
        FeatureStore.open(path).done_ids()
    shard.unlink()
    stray = path / "shards" / "notes.safetensors"
    save_file({"x": torch.zeros(2)}, stray)
    with pytest.raises(StoreError, match="notes.safetensors: not a shard of this store"):
        FeatureStore.open(path).read()


def test_a_shard_without_its_step_table_or_with_a_wrong_one_is_repaired(setup, tmp_path):
    cfg, ref = setup
    cfg, path = copy_store(setup, tmp_path)
    shards = sorted((path / "shards").glob("*.safetensors"))
    store = FeatureStore.open(path)
    with safe_open(shards[0], framework="pt") as f:
        index = {k: f.metadata()[k] for k in ("ids", "labels", "groups", "splits")}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    # The records without their steps (checksummed, as a writer that lost them would).
    rows = {k: v for k, v in tensors.items() if not k.startswith("step_")}
    store._save(shards[0], rows, index)
    with pytest.raises(StoreError, match=f"{shards[0].name}: not a shard of this store"):
        FeatureStore.open(path).read()
    # Steps keyed to a record the shard does not hold.
    with safe_open(shards[1], framework="pt") as f:
        index1 = {k: f.metadata()[k] for k in ("ids", "labels", "groups", "splits")}
        t1 = {k: f.get_tensor(k) for k in f.keys()}
    t1["step_record"] = t1["step_record"] + 100
    store._save(shards[1], t1, index1)
    result = extract(cfg, repair=True)
    assert (result.already_present, result.extracted) == (16, 8)
    assert {p.name for p in (path / "quarantine").iterdir()} == {shards[0].name, shards[1].name}
    assert_like_reference(path, ref)


def test_a_store_wedged_by_an_older_version_is_repaired(setup, tmp_path):
    """Two concurrent runs of the old code each wrote every record; shards had no checksum."""
    cfg, ref = setup
    cfg, path = copy_store(setup, tmp_path)
    for shard in sorted((path / "shards").glob("*.safetensors")):
        with safe_open(shard, framework="pt") as f:
            meta = {k: v for k, v in f.metadata().items() if k != "sha256"}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        save_file(tensors, shard, metadata=meta)  # as the older version wrote it
        shutil.copy(shard, shard.with_name("zz-second-run-" + shard.name))
    with pytest.raises(StoreError, match="is in two shards.*--repair"):
        FeatureStore.open(path).read()
    result = extract(cfg, repair=True)
    assert result.extracted == 0 and result.already_present == 24
    assert len(list((path / "quarantine").iterdir())) == 6
    for shard in (path / "shards").glob("*.safetensors"):
        with safe_open(shard, framework="pt") as f:
            assert "sha256" in f.metadata()  # checksums added
    assert_like_reference(path, ref)


def test_two_concurrent_extractions_write_every_record_once(setup, tmp_path):
    cfg, ref = setup
    path = tmp_path / "shared"
    config = tmp_path / "extract.yaml"
    config.write_text(
        f"data: {{source: {cfg.data.source}}}\nmodel: {{name_or_path: tiny-llama}}\n"
        "capture: {layers: [0, 1], max_tokens: 384, steps: lines}\nbatch_size: 4\nshard_size: 4\n"
    )
    cmd = [sys.executable, "-m", "probes.cli", "extract", "--config", str(config)]
    procs = [
        subprocess.Popen(
            [*cmd, f"store={path}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    stdout = "".join(o[0] for o in outs)
    assert stdout.count("24 extracted now") == 1 and stdout.count("24 already present") == 1
    assert_like_reference(path, ref)


def test_a_shard_is_never_replaced(setup, tmp_path):
    """Two runs of one process in one second once shared shard names: the second run's
    first shard silently replaced the first run's."""
    from probes.store import new_run_tag

    assert new_run_tag() != new_run_tag()
    _, path = copy_store(setup, tmp_path)
    store = FeatureStore.open(path)
    name = sorted((path / "shards").glob("*.safetensors"))[0].name
    run, rank, seq = name.removesuffix(".safetensors").rsplit("-", 2)
    rows = {
        "values": torch.zeros(1, len(store.names), dtype=torch.float64),
        "n_tokens": torch.ones(1, dtype=torch.long),
        "truncated": torch.zeros(1, dtype=torch.bool),
        "skipped": torch.zeros(1, dtype=torch.bool),
        # An empty step table (the record has no steps).
        "step_values": torch.zeros(0, len(store.step_names), dtype=torch.float64),
        "step_record": torch.zeros(0, dtype=torch.long),
        "step_spans": torch.zeros(0, 4, dtype=torch.long),
        "step_labels": torch.zeros(0, dtype=torch.long),
    }
    index = {"ids": ["x"], "labels": [1], "groups": ["x"], "splits": ["train"]}
    with pytest.raises(StoreError, match="exists already"):
        store.write_shard(run, int(rank[1:]), int(seq), rows, index)
