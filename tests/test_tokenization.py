"""The tokenization contract: special tokens and the text format are model options,
recorded in stores and bundles and enforced when they are read; spans stay right with a
BOS token and with a chat template."""

from __future__ import annotations

import pytest

from probes.config import CaptureConfig, DataConfig, ExtractConfig, ModelConfig
from probes.data.records import Record
from probes.errors import BundleError, ConfigError, RecordError
from probes.models import EMBEDDED_GGUF, load_frozen
from probes.tiny import char_tokenizer
from probes.tokens import render, tokenize_records

REC = Record(id="a", label=1, group="a", problem="2 + 3?", solution="2 + 3 = 5. The answer is 5.")


@pytest.fixture(scope="module")
def bos_lm():
    return load_frozen("tiny-llama-bos")


def tokens(lm, record, span="full", fmt=None):
    tok = dict(lm.identity["tokenization"])
    if fmt:
        tok["text_format"] = fmt
    return tokenize_records([record], lm.tokenizer, tok, span, 512, "error")[0]


def test_the_tokenizers_own_behaviour_is_the_default(bos_lm, tiny_llama):
    bos = bos_lm.tokenizer.bos_token_id
    contract = bos_lm.identity["tokenization"]
    assert contract["add_special_tokens"] is True and contract["prefix_ids"] == [bos]
    assert tokens(bos_lm, REC).ids[0] == bos
    assert tiny_llama.identity["tokenization"]["prefix_ids"] == []  # adds nothing itself
    off = load_frozen("tiny-llama-bos", add_special_tokens=False)
    assert off.identity["tokenization"]["prefix_ids"] == [] and tokens(off, REC).ids[0] != bos
    # The embedded model's setting is explicit: its GGUF vocabulary defines no special tokens.
    assert EMBEDDED_GGUF["smollm2-135m"].add_special_tokens is False


@pytest.mark.parametrize("fmt", ["plain", "chat"])
def test_the_solution_span_is_exactly_the_solution(bos_lm, fmt):
    t = tokens(bos_lm, REC, span="solution", fmt=fmt)
    # A character tokenizer: the span's tokens spell the solution, nothing more or less.
    spelled = "".join(bos_lm.tokenizer.convert_ids_to_tokens(t.ids[t.span_start :]))
    assert spelled == REC.solution
    assert t.ids[0] == bos_lm.tokenizer.bos_token_id  # once, from the template in chat
    assert t.ids.count(bos_lm.tokenizer.bos_token_id) == 1


def test_chat_puts_the_problem_in_the_user_turn(bos_lm):
    text, start, fmt = render(REC, bos_lm.tokenizer, "chat")
    assert fmt == "chat"
    assert text == f"<bos><|user|>\n{REC.problem}\n<|assistant|>\n{REC.solution}"
    assert text[start:] == REC.solution
    twin = Record(id="b", label=1, group="b", text=REC.full_text)
    assert render(twin, bos_lm.tokenizer, "chat")[:2] == (text, start)
    with pytest.raises(RecordError, match="a chat-format text needs"):
        render(Record(id="c", label=1, group="c", text="no markers"), bos_lm.tokenizer, "chat")
    with pytest.raises(ConfigError, match="needs a tokenizer with a chat template"):
        render(REC, char_tokenizer(), "chat")


def test_records_are_read_in_the_format_they_were_generated_in(bos_lm):
    generated = Record(
        id="g", label=1, group="g", problem="1 + 1?", solution="2", meta={"text_format": "chat"}
    )
    assert render(generated, bos_lm.tokenizer, "auto")[2] == "chat"
    assert render(generated, bos_lm.tokenizer, "plain")[2] == "plain"  # the config decides
    assert render(REC, bos_lm.tokenizer, "auto")[2] == "plain"


def extract_store(tmp_path, records, **model):
    from probes.data import write_jsonl
    from probes.extract import extract

    data = write_jsonl(records, tmp_path / "d.jsonl")
    cfg = ExtractConfig(
        data=DataConfig(source=str(data)),
        model=ModelConfig("tiny-llama-bos", **model),
        capture=CaptureConfig(layers=(0,), probe_layer=None),
        store=str(tmp_path / "store"),
    )
    return extract(cfg).store


def test_stores_and_bundles_record_the_contract_and_refuse_another(tmp_path, bos_lm):
    from probes.bundle import Scorer, from_fitted
    from probes.config import ScorerSpec
    from probes.featuredata import FeatureDataModule
    from probes.fitting import fit_scorer

    records = [
        Record(id=f"r{i}", label=i % 2, group=f"g{i}", problem=f"{i} + 1?", solution=f"{i + i % 2}")
        for i in range(10)
    ]
    store = extract_store(tmp_path / "a", records)
    assert store.manifest["model"]["tokenization"]["prefix_ids"] == [bos_lm.tokenizer.bos_token_id]
    off = extract_store(tmp_path / "b", records, add_special_tokens=False)
    assert off.manifest["model"]["tokenization"]["add_special_tokens"] is False
    dm = FeatureDataModule(off)
    a = dm.arrays("train")
    fitted = fit_scorer(ScorerSpec("thr", "threshold"), dm.names, a, a)
    path = from_fitted(fitted, off.manifest["model"], off.manifest["capture"]).save(tmp_path / "s")
    assert Scorer.load(path).meta["model"]["tokenization"]["add_special_tokens"] is False
    with pytest.raises(
        BundleError, match="tokenization.add_special_tokens: bundle False, model True"
    ):
        Scorer.load(path, model_identity=bos_lm.identity)
    from probes.evaluation import on_store

    with pytest.raises(BundleError, match="tokenization.prefix_ids: bundle \\[\\], store"):
        on_store([Scorer.load(path)], str(store.path), "train", 10, 0)
