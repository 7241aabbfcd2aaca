"""Token confounds through the capture against the model's own full logits: the capture
computes them block by block from the LM head's input (no ``(B, T, V)`` tensor), and falls
back to the full logits for a model that changes them after the head."""

from __future__ import annotations

import pytest
import torch

from probes.capture import SpectralCapture
from probes.config import CaptureConfig
from probes.models import FrozenLM
from probes.tiny import char_tokenizer, wrap_random

TEXTS = [
    "Problem: 3 + 4?\nSolution: 3 + 4 = 7. The answer is 7.",
    "Problem: 12 * 2?\nSolution: 12 * 2 = 24, so 24.",
    "Problem: 9 - 5?\nSolution: 4.",
]


def reference_confounds(lm: FrozenLM, text: str, span_start: int) -> torch.Tensor:
    """n_tokens, mean log-prob, perplexity, mean entropy from one unpadded forward pass with
    the model's full logits, in float64."""
    ids = lm.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0].double()  # (T, V)
    logp = torch.log_softmax(logits, dim=-1)
    first = max(span_start, 1)
    target = ids[0, first:]
    lp = logp[first - 1 : -1].gather(-1, target[:, None])[:, 0]
    ent = -(logp[first - 1 : -1].exp() * logp[first - 1 : -1]).sum(-1)
    n = float(ids.shape[1] - span_start)
    return torch.tensor([n, lp.mean(), (-lp.mean()).exp(), ent.mean()], dtype=torch.float64)


def token_columns(ex) -> torch.Tensor:
    names = ["n_tokens", "logprob", "perplexity", "entropy"]
    return torch.stack([ex.column(f"confound/{n}") for n in names], dim=1)


def solution_starts(lm: FrozenLM) -> list[int]:
    enc = [lm.tokenizer(t, add_special_tokens=False, return_offsets_mapping=True) for t in TEXTS]
    starts = []
    for t, e in zip(TEXTS, enc, strict=True):
        char = t.index("Solution: ") + len("Solution: ")
        starts.append(next(i for i, (a, _) in enumerate(e["offset_mapping"]) if a >= char))
    return starts


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_gpt2"])
def test_confounds_from_head_blocks_equal_the_full_logits(model, request):
    lm = request.getfixturevalue(model)
    cfg = CaptureConfig(layers=(0,), probe_layer=None, span="solution", families=("eig_mean",))
    capture = SpectralCapture(lm, cfg)
    char_starts = [t.index("Solution: ") + len("Solution: ") for t in TEXTS]
    ex = capture.extract(TEXTS, span_starts=char_starts, batch_size=3)  # padded batch
    assert capture._head_blocks and capture._head_checked  # the block path was used
    for i, (text, start) in enumerate(zip(TEXTS, solution_starts(lm), strict=True)):
        ref = reference_confounds(lm, text, start)
        torch.testing.assert_close(token_columns(ex)[i], ref, rtol=1e-5, atol=1e-5)


def soft_capped_model() -> FrozenLM:
    """A tiny random Gemma-2: its logits are soft-capped after the LM head."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    tokenizer = char_tokenizer()
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=256,
        final_logit_softcapping=0.5,  # strong, so that capping changes every logit
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=2,
        attn_implementation="eager",
        initializer_range=0.5,
    )
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config)
    return wrap_random(model, tokenizer, "tiny-gemma2", tokenization=True)


def test_a_model_that_changes_logits_after_the_head_gets_the_full_logits():
    lm = soft_capped_model()
    cfg = CaptureConfig(layers=(0,), probe_layer=None, span="full", families=("eig_mean",))
    capture = SpectralCapture(lm, cfg)
    ex = capture.extract(TEXTS, batch_size=2)
    assert not capture._head_blocks  # the check saw the capping and turned blocks off
    for i, text in enumerate(TEXTS):
        ref = reference_confounds(lm, text, 0)
        torch.testing.assert_close(token_columns(ex)[i], ref, rtol=1e-5, atol=1e-5)
