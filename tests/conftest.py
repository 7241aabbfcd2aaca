"""Fixtures of the test suite (the environment is set in the root conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_llama():
    from probes.models import load_frozen

    return load_frozen("tiny-llama")


@pytest.fixture(scope="session")
def tiny_gpt2():
    from probes.models import load_frozen

    return load_frozen("tiny-gpt2")


@pytest.fixture(scope="session")
def solution_bundle(tiny_llama, tmp_path_factory):
    """A logistic scorer bundle on the tiny model that reads the solution span (short
    ``max_tokens``, so that long texts are truncated), saved to a folder."""
    import torch

    from probes.bundle import from_fitted
    from probes.capture import SpectralCapture
    from probes.config import CaptureConfig, ScorerSpec
    from probes.featuredata import SplitArrays
    from probes.fitting import fit_scorer

    cfg = CaptureConfig(layers=(0, 1), probe_layer=None, span="solution", max_tokens=96)
    capture = SpectralCapture(tiny_llama, cfg)
    texts = [
        f"Problem: {a} + {a}?\nSolution: {a} + {a} = {2 * a + i % 2}."
        for i, a in enumerate(range(10, 34))
    ]
    starts = [t.index("Solution: ") + len("Solution: ") for t in texts]
    ex = capture.extract(texts, span_starts=starts)
    y = torch.tensor([i % 2 == 0 for i in range(len(texts))], dtype=torch.long)
    split = SplitArrays(ex.values, y, [str(i) for i in range(len(texts))], [])
    fitted = fit_scorer(ScorerSpec("lr", "logistic", max_epochs=10), ex.names, split, split)
    scorer = from_fitted(fitted, tiny_llama.identity, cfg.to_dict())
    return scorer.save(tmp_path_factory.mktemp("bundle") / "lr")
