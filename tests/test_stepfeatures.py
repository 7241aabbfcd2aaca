"""Per-step graph features against their definitions, computed independently in NumPy."""

from __future__ import annotations

import numpy as np
import torch

from probes.stepfeatures import STEP_FEATURES, step_features


def causal_attention(rng, T: int) -> np.ndarray:
    logits = rng.normal(size=(T, T))
    logits[np.triu_indices(T, 1)] = -np.inf
    A = np.exp(logits - logits.max(axis=1, keepdims=True))
    return A / A.sum(axis=1, keepdims=True)


def lsym(W: np.ndarray) -> np.ndarray:
    d = W.sum(axis=1)
    s = np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0)
    return np.diag((d > 0).astype(float)) - s[:, None] * W * s[None, :]


def fiedler(W: np.ndarray) -> float:
    return 0.0 if len(W) < 2 else max(0.0, float(np.linalg.eigvalsh(lsym(W))[1]))


def reference(A: np.ndarray, spans) -> np.ndarray:
    T = len(A)
    W = (A + A.T) / 2
    L = lsym(W)
    rows, previous = [], 0.0
    for a, b in spans:
        received = A[b:, a:b].sum(axis=1).mean() if b < T else np.nan
        prefix = fiedler(W[:b, :b])
        rows.append(
            [
                received,
                received / (b - a),
                np.diag(L)[a:b].mean(),
                fiedler(W[a:b, a:b]),
                prefix,
                prefix - previous,
            ]
        )
        previous = prefix
    return np.array(rows)


def test_step_features_match_their_definitions():
    rng = np.random.default_rng(0)
    for T, spans in ((12, [(0, 3), (3, 4), (4, 9), (9, 12)]), (30, [(0, 10), (10, 30)])):
        A = causal_attention(rng, T)
        got = step_features(torch.from_numpy(A).float(), spans).numpy()
        assert got.shape == (len(spans), len(STEP_FEATURES))
        np.testing.assert_allclose(got, reference(A, spans), rtol=1e-5, atol=1e-6)
    assert np.isnan(got[-1, 0])  # the last step receives from no later token


def test_a_step_later_tokens_rely_on_receives_more():
    """Later tokens that put half their attention on step 0 make its 'received' 0.5."""
    T = 6
    A = np.zeros((T, T))
    A[0, 0] = 1
    A[1, :2] = 0.5
    for i in range(2, T):
        A[i, 0], A[i, i] = 0.5, 0.5
    got = step_features(torch.from_numpy(A), [(0, 1), (1, 2), (2, 6)]).numpy()
    np.testing.assert_allclose(got[:2, 0], [0.5, 0.0])
