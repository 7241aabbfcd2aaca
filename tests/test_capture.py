"""Streaming capture: hooks equal output_attentions=True, batching equals one text at a time,
and every bad input gets a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch

from probes.capture import NonFiniteAttentionError, SpectralCapture, resolve_layers
from probes.config import CaptureConfig, ConfigError
from probes.features import HeadDiagonals, diagonal_features, reduce_layer, resolve_families
from probes.models import AttentionUnavailableError, FrozenLM
from probes.tokens import TextTooLongError

TEXTS = [
    "Tom has 3 apples and buys 5 more. 3 + 5 = 8. He has 8 apples.",
    "2 * 7 = 14",
    "A train goes 60 km/h for 2 h: 60 * 2 = 120 km. The answer is 120.",
    "Sum: 1 + 2 + 3 = 6, so 6 / 3 = 2.",
]


def reference(lm: FrozenLM, text: str, cfg: CaptureConfig, layers: list[int], span_start: int = 0):
    """Features of one text from output_attentions=True / output_hidden_states=True."""
    return _reference(lm, text, cfg, layers, span_start)


def _reference(lm, text, cfg, layers, span_start):
    ids = lm.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = lm.model(input_ids=ids, output_attentions=True, output_hidden_states=True)
    fams = resolve_families(cfg)
    s = span_start
    L = lm.n_layers

    def diagonal_part(i):
        a = out.attentions[i][0, :, s:, s:].double()
        nxt = (
            out.attentions[i + 1][0, :, s:, s:].double().diagonal(0, -2, -1) if i < L - 1 else None
        )
        stats = HeadDiagonals(a.diagonal(0, -2, -1), a.sum(dim=-2), nxt, i == 0, i == L - 1, cfg)
        return diagonal_features(stats, fams)

    parts = [
        torch.cat(
            [
                reduce_layer(
                    out.attentions[i][0, :, s:, s:], out.hidden_states[i + 1][0, s:], fams, cfg
                ),
                diagonal_part(i),
            ]
        )
        for i in layers
    ]
    # Confounds straight from their definitions, in NumPy.
    logp = scipy.special.log_softmax(out.logits[0].double().numpy(), axis=-1)
    tok = ids[0].numpy()
    first = max(s, 1)
    token_logp = np.array([logp[t - 1, tok[t]] for t in range(first, len(tok))])
    ent = np.mean([-(np.exp(logp[t - 1]) * logp[t - 1]).sum() for t in range(first, len(tok))])
    conf = [len(tok) - s, token_logp.mean(), np.exp(-token_logp.mean()), ent]
    # Full-length confounds: the span's tokens, characters and non-blank lines, untruncated.
    span_text = text[span_start:] if span_start else text  # a character tokenizer
    steps = len([line for line in span_text.split("\n") if line.strip()])
    conf += [len(tok) - s, len(span_text), steps]
    probe = lm.n_layers // 2  # the default probe_layer, 'middle'
    hidden_mean = out.hidden_states[probe + 1][0, s:].double().mean(dim=0).numpy()
    return np.concatenate([torch.cat(parts).numpy(), hidden_mean, conf])


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_gpt2"])
@pytest.mark.parametrize("heads", ["mean", "each"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_hooks_equal_output_attentions(request, model, heads, batch_size):
    lm = request.getfixturevalue(model)
    # All families, all layers: the last layer's graph signal is taken after the final norm,
    # as output_hidden_states reports it (and Geometry of Reason reads it).
    layers = list(range(lm.n_layers))
    cfg = CaptureConfig(families="all", heads=heads, layers=tuple(layers))
    ex = SpectralCapture(lm, cfg).extract(TEXTS, batch_size=batch_size)
    for i, text in enumerate(TEXTS):
        want = reference(lm, text, cfg, layers)
        np.testing.assert_allclose(ex.values[i].numpy(), want, rtol=2e-4, atol=1e-5)
    assert not ex.truncated.any() and not ex.skipped.any()


@pytest.mark.parametrize("workers,pending_mb", [(1, 256), (3, 256), (2, 0)])
def test_solver_threads_and_early_solves_change_nothing(tiny_llama, workers, pending_mb):
    # One solver on this thread, three threads, and a solve after every layer (pending_mb=0)
    # must all give the reference; under inference mode too, as in Lightning's predict loop.
    layers = list(range(tiny_llama.n_layers - 1))
    cfg = CaptureConfig(families="all", heads="each", layers=tuple(layers))
    cap = SpectralCapture(tiny_llama, cfg, eig_workers=workers, pending_mb=pending_mb)
    with torch.inference_mode():
        ex = cap.extract(TEXTS, batch_size=2)
    cap.close()
    for i, text in enumerate(TEXTS):
        want = reference(tiny_llama, text, cfg, layers)
        np.testing.assert_allclose(ex.values[i].numpy(), want, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("heads", ["mean", "each"])
def test_batched_solves_equal_one_solve_per_text_and_layer(tiny_llama, heads, monkeypatch):
    """The GPU path (every graph of one size solved in one call, on the thread that runs
    the model), run here on the CPU: the same features and counts as one solve per text and
    layer, in fewer calls. Two texts share a length, so their graphs share a call too."""
    import probes.capture as capture_mod
    from probes.features import FAMILIES

    families = tuple(n for n, f in FAMILIES.items() if not f.needs_hidden)
    cfg = CaptureConfig(families=families, heads=heads, eig_method="mixed")
    texts = [*TEXTS, TEXTS[1].replace("7", "8")]  # as long as TEXTS[1]
    calls = []
    real = capture_mod.stacked_graph_features

    def counted(graphs, *args, **kwargs):
        calls.append(graphs.shape[0])
        return real(graphs, *args, **kwargs)

    monkeypatch.setattr(capture_mod, "stacked_graph_features", counted)
    per_job = SpectralCapture(tiny_llama, cfg, batched=False)
    batched = SpectralCapture(tiny_llama, cfg, batched=True)
    want = per_job.extract(texts, batch_size=5).values
    assert calls == []
    got = batched.extract(texts, batch_size=5).values
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, equal_nan=True)
    assert batched.solver_counts == per_job.solver_counts
    assert sum(calls) == len(texts) * tiny_llama.n_layers  # every layer of every text
    assert len(calls) == len(texts) - 1 and max(calls) == 2 * tiny_llama.n_layers


def test_solver_error_in_a_worker_names_record_and_layer(tiny_llama, monkeypatch):
    import probes.capture as capture_mod
    from probes.spectral import NegativeEigenvalueError

    def broken(graphs, hidden, families, cfg, counts=None):
        raise NegativeEigenvalueError(-0.5, (0,))

    monkeypatch.setattr(capture_mod, "graph_features", broken)
    cap = SpectralCapture(tiny_llama, CaptureConfig(layers=(2,)), eig_workers=2)
    with pytest.raises(capture_mod.SpectrumError, match="record 'r7', layer 2, mean of heads"):
        cap.extract(TEXTS[:1], ids=["r7"])


def test_last_layer_spectra_and_padding(tiny_llama):
    cfg = CaptureConfig(layers="all")
    cap = SpectralCapture(tiny_llama, cfg)
    batched = cap.extract(TEXTS, batch_size=4).values
    single = torch.cat([cap.extract([t]).values for t in TEXTS])
    np.testing.assert_allclose(batched.numpy(), single.numpy(), rtol=2e-4, atol=1e-5)
    want = reference(tiny_llama, TEXTS[1], cfg, list(range(4)))
    np.testing.assert_allclose(single[1].numpy(), want, rtol=2e-4, atol=1e-5)


def test_solution_span_takes_the_sub_matrix(tiny_gpt2):
    problem, solution = "Q: 4 + 4? ", "A: 4 + 4 = 8."
    cfg = CaptureConfig(span="solution", layers=(0, 1), families="all")
    ex = SpectralCapture(tiny_gpt2, cfg).extract([problem + solution], span_starts=[len(problem)])
    want = reference(tiny_gpt2, problem + solution, cfg, [0, 1], span_start=len(problem))
    np.testing.assert_allclose(ex.values[0].numpy(), want, rtol=2e-4, atol=1e-5)
    assert int(ex.n_tokens[0]) == len(problem + solution)  # char tokenizer: tokens == chars
    with pytest.raises(ConfigError, match="span_starts"):
        SpectralCapture(tiny_gpt2, cfg).extract([problem + solution])


def test_attention_rows_and_causality_from_hooks(tiny_llama):
    seen = []
    attn = tiny_llama.attention_module(1)
    handle = attn.register_forward_hook(lambda m, a, o: seen.append(o[1]))
    try:
        SpectralCapture(tiny_llama, CaptureConfig(layers=(1,))).extract(TEXTS[:1])
    finally:
        handle.remove()
    A = seen[0][0]  # (H, T, T)
    torch.testing.assert_close(A.sum(-1), torch.ones(A.shape[:-1]))
    assert torch.equal(A.triu(1), torch.zeros_like(A))


def test_hooks_are_removed_even_after_an_error(tiny_llama):
    cap = SpectralCapture(tiny_llama, CaptureConfig(layers=(0,)))
    # transformers keeps hooks of its own on these modules: count, don't expect none.
    before = (
        len(tiny_llama.attention_module(0)._forward_hooks),
        len(tiny_llama.layers[0]._forward_hooks),
    )
    poison = tiny_llama.attention_module(0).register_forward_hook(
        lambda m, a, o: (o[0], torch.full_like(o[1], float("nan")))
    )
    try:
        with pytest.raises(NonFiniteAttentionError):
            cap.extract(TEXTS[:1])
    finally:
        poison.remove()
    after = (
        len(tiny_llama.attention_module(0)._forward_hooks),
        len(tiny_llama.layers[0]._forward_hooks),
    )
    assert after == before


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("pending_mb", [256, 0])
def test_nan_attention_names_record_layer_and_head(tiny_llama, batched, pending_mb):
    """The check is read once per batch (or early solve), not in the hooks: it must still
    name the poisoned text of a batch, its layer and head, before any solve reads it."""

    def poison(module, args, output):
        weights = output[1].clone()
        weights[1, 2, 3, 1] = float("nan")  # the batch's second (longest-first) text, head 2
        return output[0], weights

    texts = [TEXTS[0], TEXTS[2], TEXTS[1]]  # longest first: TEXTS[0] is row 1
    handle = tiny_llama.attention_module(2).register_forward_hook(poison)
    cap = SpectralCapture(tiny_llama, CaptureConfig(heads="each"), batched=batched)
    cap.pending_bytes = pending_mb * 2**20
    try:
        with pytest.raises(
            NonFiniteAttentionError, match="record 'rec-7': attention of layer 2, head 2"
        ):
            cap.extract(texts, ids=["rec-7", "r1", "r2"], batch_size=3)
    finally:
        handle.remove()


def test_empty_text_is_refused_before_any_work(tiny_llama):
    cap = SpectralCapture(tiny_llama, CaptureConfig())
    with pytest.raises(ValueError, match="record 'b' \\(#1\\): text is empty"):
        cap.extract(["1 + 1 = 2", "   "], ids=["a", "b"])


def test_sdpa_model_is_refused_with_the_fix():
    from transformers import AutoModelForCausalLM

    from probes.tiny import _config, char_tokenizer

    tok = char_tokenizer()
    cfg = _config("tiny-llama", len(tok))
    cfg._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    with pytest.raises(AttentionUnavailableError, match="attn_implementation='eager'"):
        FrozenLM(model, tok, {"name_or_path": "sdpa-llama"})


def test_switching_to_sdpa_after_loading_is_caught_in_the_hook():
    from probes.models import load_frozen

    lm = load_frozen("tiny-llama")
    lm.model.set_attn_implementation("sdpa")
    with pytest.raises(AttentionUnavailableError, match="layer 0's attention returned no weights"):
        SpectralCapture(lm, CaptureConfig(layers=(0,))).extract(TEXTS[:1])


def test_layer_out_of_range_names_the_option(tiny_llama):
    with pytest.raises(ConfigError, match="option 'layers': index 9 is out of range .* 4 layers"):
        SpectralCapture(tiny_llama, CaptureConfig(layers=(0, 9)))
    assert resolve_layers((-1, 0, 0), 4) == [0, 3]


def test_overflow_policies(tiny_llama):
    long, short = "1 + 2 = 3. " * 4, "2 + 2 = 4"
    trunc = SpectralCapture(tiny_llama, CaptureConfig(max_tokens=20)).extract([long, short])
    assert trunc.truncated.tolist() == [True, False] and trunc.n_tokens.tolist() == [20, 9]
    cut = SpectralCapture(tiny_llama, CaptureConfig()).extract([long[:20]])
    length = [trunc.names.index(f"confound/{n}") for n in ("n_tokens_full", "n_chars", "n_steps")]
    rest = [j for j in range(len(trunc.names)) if j not in length]
    # What is read is the first 20 tokens...
    np.testing.assert_allclose(
        trunc.values[0, rest].numpy(), cut.values[0, rest].numpy(), rtol=1e-5, atol=1e-7
    )
    # ...but the length confounds see the whole text: 44 characters (= tokens), one line.
    assert trunc.values[0, length].tolist() == [44, 44, 1]
    assert cut.values[0, length].tolist() == [20, 20, 1]

    skip = SpectralCapture(tiny_llama, CaptureConfig(max_tokens=20, overflow="skip")).extract(
        [long, short]
    )
    assert skip.skipped.tolist() == [True, False]
    assert torch.isnan(skip.values[0]).all() and torch.isfinite(skip.values[1]).all()

    with pytest.raises(TextTooLongError, match="record '0' \\(#0\\): 44 tokens > max_tokens=20"):
        SpectralCapture(tiny_llama, CaptureConfig(max_tokens=20, overflow="error")).extract([long])


def test_truncation_that_cuts_the_whole_span_skips(tiny_llama):
    text = "x" * 30 + "1 + 1 = 2"
    cfg = CaptureConfig(max_tokens=20, span="solution")
    ex = SpectralCapture(tiny_llama, cfg).extract([text, "1 + 1 = 2 ok"], span_starts=[30, 0])
    assert ex.skipped.tolist() == [True, False] and torch.isnan(ex.values[0]).all()
