"""Integration: the embedded SmolLM2-135M from its package, converted once and cached."""

from __future__ import annotations

import pytest
import torch

from probes.capture import SpectralCapture
from probes.cli import WORKED_EXAMPLE
from probes.config import CaptureConfig
from probes.models import embedded_gguf_path, load_frozen

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    try:
        embedded_gguf_path("smollm2-135m")
    except ImportError as err:  # the Makefile installs it; say so rather than fail obscurely
        pytest.fail(str(err))
    import os

    os.environ["PROBES_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    first = load_frozen("smollm2-135m")
    second = load_frozen("smollm2-135m")
    return first, second


def test_conversion_is_cached_and_identical(smollm):
    first, second = smollm
    assert (first.source, second.source) == ("converted", "cache")
    assert first.identity == second.identity
    assert first.identity["weights_hash"].startswith("sha256:")
    assert (first.n_layers, first.n_heads) == (30, 9)
    ids = second.tokenizer(WORKED_EXAMPLE, add_special_tokens=False, return_tensors="pt")
    ids_first = first.tokenizer(WORKED_EXAMPLE, add_special_tokens=False, return_tensors="pt")
    assert torch.equal(ids["input_ids"], ids_first["input_ids"])
    with torch.inference_mode():
        a = first.model(**ids).logits
        b = second.model(**ids).logits
    torch.testing.assert_close(a, b)


def test_capture_on_a_math_text(smollm):
    lm = smollm[1]
    seen = {}
    handle = lm.attention_module(12).register_forward_hook(lambda m, a, o: seen.update(a=o[1]))
    try:
        cap = SpectralCapture(lm, CaptureConfig(families="all", layers=(0, 12, -1)))
        ex = cap.extract([WORKED_EXAMPLE])
    finally:
        handle.remove()
    A = seen["a"][0].double()  # (H, T, T)
    torch.testing.assert_close(
        A.sum(-1), torch.ones(A.shape[:-1], dtype=A.dtype), atol=1e-5, rtol=0
    )
    assert float(A.triu(1).abs().max()) == 0.0  # causal
    assert torch.isfinite(ex.values).all()
    assert {n.split("/")[1] for n in cap.spectral_names} == {"L00", "L12", "L29"}
    fiedler = ex.column("fiedler/L12")  # families "all" includes it
    assert 0 < float(fiedler) <= 2  # L_sym spectrum lies in [0, 2]
    assert float(ex.column("confound/logprob")) < 0


def test_attn_logdet_is_llm_checks_score_under_head_mean_graphs(smollm):
    """LLM-Check's released get_attn_eig_prod: for one layer, the sum over heads of
    mean_j log A_h[j, j] over the analysed span; computed here from output_attentions."""
    import numpy as np

    lm = smollm[1]
    texts = [WORKED_EXAMPLE, "Problem: 7 * 6?\nSolution: 7 * 6 = 42. The answer is 42."]
    starts = [t.index("Solution: ") + len("Solution: ") for t in texts]
    cfg = CaptureConfig(families=("attn_logdet",), heads="mean", span="solution", probe_layer=None)
    # One text per forward pass: padding in a batch moves float32 attention by ~1e-7.
    ex = SpectralCapture(lm, cfg).extract(texts, span_starts=starts, batch_size=1)
    for i, text in enumerate(texts):
        enc = lm.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        s = next(t for t, (_, end) in enumerate(enc["offset_mapping"]) if end > starts[i])
        with torch.inference_mode():
            out = lm.model(torch.tensor([enc["input_ids"]]), output_attentions=True)
        for layer in (0, 12, 29):
            A = out.attentions[layer][0].double().numpy()[:, s:, s:]  # (H, n, n)
            want = sum(np.log(np.diag(A[h])).mean() for h in range(A.shape[0]))
            got = float(ex.values[i, ex.names.index(f"attn_logdet/L{layer:02d}")])
            assert got == pytest.approx(want, abs=1e-6), (i, layer)
