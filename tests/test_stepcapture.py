"""Per-step features from the streaming capture against an independent path: the model's own
``output_attentions`` and full logits, one unpadded text at a time, the steps' token spans
from the tokenizer's offsets, and the features from their NumPy definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes.capture import SpectralCapture
from probes.config import CaptureConfig, ConfigError
from probes.data.records import Record
from probes.steps import segment
from tests.test_stepfeatures import reference

RECORDS = [
    Record("a", 1, "g1", problem="What is 2 + 3?", solution="2 + 3 = 5.\nSo the answer is 5."),
    Record(
        "b",
        0,
        "g2",
        problem="What is 4 * 3?",
        solution="4 * 3 = 11.\nThen 11 + 1 = 12.\nThe answer is 12.",
        meta={"first_wrong_step": {"start": 0}},
    ),
    Record("c", 0, "g3", problem="What is 9 - 5?", solution="9 - 5 = 3. The answer is 3."),
]


def reference_steps(lm, record: Record, layers, span: str) -> np.ndarray:
    """``(S, 6 * len(layers) + 3)`` step rows of one record, computed without the capture."""
    text, sol = record.full_text, record.solution_start
    enc = lm.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]])
    s = next(t for t, (_, e) in enumerate(enc["offset_mapping"]) if e > sol) if span else 0
    with torch.no_grad():
        out = lm.model(input_ids=ids, output_attentions=True)
    steps = segment(record.solution)
    spans = []
    for st in steps:
        hit = [
            t
            for t, (a, e) in enumerate(enc["offset_mapping"])
            if e > a and a < sol + st.end and e > sol + st.start
        ]
        spans.append((hit[0] - s, hit[-1] + 1 - s))
    blocks = []
    for layer in layers:
        A = out.attentions[layer][0, :, s:, s:].double().mean(0).numpy()
        blocks.append(reference(A, spans))
    logp = torch.log_softmax(out.logits[0].double(), dim=-1)
    conf = []
    for a, b in spans:
        pos = [s + t for t in range(a, b) if s + t >= 1]
        lp = [float(logp[p - 1, ids[0, p]]) for p in pos]
        ent = [float(-(logp[p - 1].exp() * logp[p - 1]).sum()) for p in pos]
        conf.append([b - a, np.mean(lp), np.mean(ent)])
    return np.concatenate([*blocks, np.array(conf)], axis=1)


@pytest.mark.parametrize("span", ["full", "solution"])
def test_step_table_matches_an_independent_computation(tiny_llama, span):
    layers = (0, 1)
    cfg = CaptureConfig(layers=layers, steps="lines", span=span, probe_layer=None)
    for workers in (1, 2):
        ex = SpectralCapture(tiny_llama, cfg, eig_workers=workers).extract_records(
            RECORDS,
            batch_size=3,  # one padded batch
        )
        assert len(ex.step_names) == 6 * len(layers) + 3
        for record, rows in zip(RECORDS, ex.step_values, strict=True):
            want = reference_steps(tiny_llama, record, layers, span == "solution")
            assert rows.shape == want.shape
            np.testing.assert_allclose(rows.numpy(), want, rtol=2e-4, atol=2e-5)


def test_steps_leave_the_text_features_as_they_were(tiny_llama):
    plain = CaptureConfig(layers=(0, 1), span="solution", probe_layer=None)
    with_steps = CaptureConfig(layers=(0, 1), span="solution", probe_layer=None, steps="lines")
    a = SpectralCapture(tiny_llama, plain).extract_records(RECORDS)
    b = SpectralCapture(tiny_llama, with_steps).extract_records(RECORDS)
    assert a.names == b.names and a.step_names == [] and a.step_values[0].shape == (0, 0)
    torch.testing.assert_close(a.values, b.values, rtol=0, atol=0, equal_nan=True)


def test_step_layers_outside_the_capture_layers_are_read_too(tiny_llama):
    cfg = CaptureConfig(layers=(0,), steps="lines", step_layers=(1,), probe_layer=None)
    ex = SpectralCapture(tiny_llama, cfg).extract_records(RECORDS[:1])
    assert [n for n in ex.step_names if n.startswith("step/")][0] == "step/received/L01"
    want = reference_steps(tiny_llama, RECORDS[0], (1,), False)
    np.testing.assert_allclose(ex.step_values[0].numpy(), want, rtol=2e-4, atol=2e-5)


def test_truncation_cuts_steps_and_leaves_them_unread(tiny_llama):
    cfg = CaptureConfig(layers=(0,), steps="lines", probe_layer=None, max_tokens=50)
    ex = SpectralCapture(tiny_llama, cfg).extract_records(RECORDS[1:2])
    spans = ex.steps[0]
    assert ex.truncated[0] and len(spans) == 3
    assert spans[-1].stop <= spans[-1].first  # the last step lies beyond token 50
    last = ex.step_values[0][-1]
    assert torch.isnan(last[:6]).all() and last[6] == 0  # no features; 0 tokens read
    assert not torch.isnan(ex.step_values[0][0, :2]).any()


def test_step_options_are_checked():
    with pytest.raises(ConfigError, match="option 'steps'"):
        CaptureConfig(steps="paragraphs")
    with pytest.raises(ConfigError, match="'step_layers' is set, but 'steps' is null"):
        CaptureConfig(step_layers=(1,))
