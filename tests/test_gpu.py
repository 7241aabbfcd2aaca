"""On CUDA: the embedded model's features in float32 and bfloat16 against CPU float32,
within the tolerances of tests/precision.py; the graphs solved on the GPU, batched. Skipped
without CUDA (run: ``pytest -m gpu``)."""

from __future__ import annotations

import pytest
import torch

from probes.capture import SpectralCapture
from probes.config import CaptureConfig, ModelConfig
from probes.models import load_frozen
from tests.precision import TOLERANCE, agreement, champ_texts

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    import os

    os.environ["PROBES_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    lm = load_frozen(ModelConfig(dtype="float32", device="cpu"))
    texts = champ_texts(lm.tokenizer)
    refs = {h: SpectralCapture(lm, CaptureConfig(heads=h)).extract(texts) for h in ("mean", "each")}
    return texts, refs


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("heads", ["mean", "each"])
def test_cuda_features_match_cpu_float32(reference, dtype, heads):
    texts, refs = reference
    lm = load_frozen(ModelConfig(dtype=dtype, device="cuda"))
    cap = SpectralCapture(lm, CaptureConfig(heads=heads))
    assert cap.batched and cap.eig_workers == 1  # the GPU path
    got = cap.extract(texts, batch_size=4)
    found = agreement(refs[heads].values.numpy(), got.values.numpy(), refs[heads].names)
    print(f"cuda {dtype} heads={heads}: {found}")  # the numbers for the notes
    assert found.within(dtype), (found, TOLERANCE[dtype])
    assert cap.solver_counts["graphs"] == len(texts) * lm.n_layers * (
        1 if heads == "mean" else lm.n_heads
    )


def test_cuda_step_table_matches_cpu():
    """The step table on the GPU (the step graphs leave it for the solver threads) against
    the CPU's, float32 weights on both."""
    from probes.data import BUILDERS

    records = [r for r in BUILDERS["champ"](seed=0) if r.label == 0][:4]
    cfg = CaptureConfig(steps="lines", step_layers=(0, 14, 29), span="solution", max_tokens=512)
    cpu = SpectralCapture(load_frozen(ModelConfig(device="cpu")), cfg).extract_records(records)
    gpu_cap = SpectralCapture(load_frozen(ModelConfig(device="cuda")), cfg)
    gpu = gpu_cap.extract_records(records, batch_size=4)
    assert gpu.steps == cpu.steps
    for a, b in zip(cpu.step_values, gpu.step_values, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, equal_nan=True)
