"""The embedded model in bfloat16 (on the CPU) against float32: its features within the
stated tolerances (tests/precision.py), and the GPU path's batched solve equal to the
per-layer one on real texts. CUDA itself: tests/test_gpu.py."""

from __future__ import annotations

import pytest
import torch

from probes.capture import SpectralCapture
from probes.config import CaptureConfig, ModelConfig
from probes.models import load_frozen
from tests.precision import TOLERANCE, agreement, champ_texts

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    import os

    os.environ["PROBES_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    lm = load_frozen(ModelConfig(dtype="float32", device="cpu"))
    return lm, champ_texts(lm.tokenizer)


@pytest.mark.parametrize("heads", ["mean", "each"])
def test_bfloat16_features_are_within_the_stated_tolerance(embedded, heads):
    lm32, texts = embedded
    lm16 = load_frozen(ModelConfig(dtype="bfloat16", device="cpu"))
    assert next(lm16.model.parameters()).dtype == torch.bfloat16
    cfg = CaptureConfig(heads=heads)
    ref = SpectralCapture(lm32, cfg).extract(texts)
    got = SpectralCapture(lm16, cfg).extract(texts)
    found = agreement(ref.values.numpy(), got.values.numpy(), ref.names)
    assert found.within("bfloat16"), (found, TOLERANCE["bfloat16"])
    assert not found.within("float32")  # the comparison can tell the precisions apart


def test_batched_solve_equals_per_layer_solves_on_real_texts(embedded):
    lm, texts = embedded
    cfg = CaptureConfig(heads="each")
    ref = SpectralCapture(lm, cfg, batched=False).extract(texts)
    got = SpectralCapture(lm, cfg, batched=True).extract(texts)
    torch.testing.assert_close(got.values, ref.values, rtol=1e-10, atol=1e-12)
