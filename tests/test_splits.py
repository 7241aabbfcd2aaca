"""Grouped, stratified splits and the text datamodule."""

from __future__ import annotations

import numpy as np
import pytest

from probes.data import BUILDERS, TextDataModule, assign_splits
from probes.data.records import Record


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_never_cross_and_balance_holds(seed):
    recs = BUILDERS["gsm-perturb"](seed=seed, n=60)
    assignment = assign_splits(recs, seed=seed)
    split_of_group = {}
    for r in recs:
        assert split_of_group.setdefault(r.group, assignment[r.id]) == assignment[r.id]
    for split, share in (("train", 0.6), ("calib", 0.2), ("test", 0.2)):
        labels = [r.label for r in recs if assignment[r.id] == split]
        assert abs(len(labels) / len(recs) - share) < 0.05
        assert abs(np.mean(labels) - 0.5) <= 0.05


def test_unbalanced_groups_stay_stratified():
    # CHAMP: 96 valid of 540, two solutions per problem, mixed labels within groups.
    recs = BUILDERS["champ"](seed=0)
    assignment = assign_splits(recs, seed=0)
    overall = np.mean([r.label for r in recs])
    for split in ("train", "calib", "test"):
        labels = [r.label for r in recs if assignment[r.id] == split]
        assert abs(np.mean(labels) - overall) < 0.05
    assert assign_splits(recs, seed=0) == assignment
    assert assign_splits(recs, seed=1) != assignment


def test_bad_fractions_named():
    with pytest.raises(ValueError, match="option 'fractions'"):
        assign_splits([], fractions=(0.5, 0.5, 0.5))


def test_datamodule_saves_and_reuses_the_split(tmp_path, tiny_llama):
    recs = BUILDERS["gsm-perturb"](seed=0, n=20)
    split_file = tmp_path / "splits.json"
    dm = TextDataModule(recs, tiny_llama.tokenizer, split_file=split_file, span="solution", seed=5)
    dm.setup()
    first = {it.record.id: it.split for it in dm.split("all")}
    # Another seed does not matter once the split is saved: later steps see the same split.
    dm2 = TextDataModule(recs, tiny_llama.tokenizer, split_file=split_file, seed=99)
    dm2.setup()
    assert {it.record.id: it.split for it in dm2.split("all")} == first
    item = dm.split("train")[0]
    text = item.record.full_text
    assert item.tokens.span_start == item.record.solution_start  # char tokenizer
    assert text[item.record.solution_start :] == item.record.solution
    batch = next(iter(dm.predict_dataloader()))
    assert len(batch) == 4 and len(batch[0].tokens.ids) >= len(batch[-1].tokens.ids)
    assert sum(len(b) for b in dm.val_dataloader()) == len(dm.split("calib"))
    with pytest.raises(ValueError, match="saved split does not match"):
        TextDataModule(recs[:-1], tiny_llama.tokenizer, split_file=split_file).setup()


def test_datamodule_reads_a_file_with_a_mapping(tmp_path, tiny_llama):
    path = tmp_path / "mine.csv"
    path.write_text(
        "uid,response,ok\n" + "".join(f"r{i},{i} + 1 = {i + 1},{i % 2}\n" for i in range(10))
    )
    dm = TextDataModule(
        path, tiny_llama.tokenizer, mapping={"id": "uid", "text": "response", "label": "ok"}
    )
    assert len(dm.split("all")) == 10
    assert isinstance(dm.split("test")[0].record, Record)


def test_concurrent_saves_of_one_split_file_all_succeed(tmp_path):
    """DDP ranks save the same splits.json at once; none may lose the other's temp file."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    from probes.data.splits import save_splits

    path = tmp_path / "splits.json"
    assignment = {f"r{i}": "train" for i in range(2000)}

    def save(_):
        for _ in range(20):
            save_splits(assignment, path, seed=0, fractions=(0.6, 0.2, 0.2))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(save, range(4)))  # re-raises the first worker error
    assert json.loads(path.read_text())["splits"] == assignment
    assert [p.name for p in tmp_path.iterdir()] == ["splits.json"]  # no temp left behind
