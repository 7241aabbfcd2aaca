"""Per-step graph features of one layer's attention (the graph view of a solution's steps).

For the analysed span's attention ``A`` ``(T, T)`` (causal, rows summing to 1; the head
mean, or one head) and a step holding tokens ``[a, b)``, with ``W = (A + A^T) / 2`` and
``L_sym(G)`` the normalized Laplacian of a graph ``G`` (``probes.spectral``):

* ``received``: the mean, over the later tokens ``i >= b``, of the attention mass token
  ``i`` sends to the step, ``sum_{a <= j < b} A[i, j]``; NaN for the last step (no later
  tokens). A step that later steps lean on receives much; one they avoid, little.
* ``received_per_token``: ``received / (b - a)``.
* ``diagonal``: the mean of ``L_sym(W)[j, j]`` over the step's tokens: one minus each
  token's self-loop weight over its degree, over the whole text's graph.
* ``block_fiedler``: ``lambda_2`` of ``L_sym`` of the step's own block ``W[a:b, a:b]``
  (0 for a one-token step): how well the step's tokens hold together.
* ``prefix_fiedler``: ``lambda_2`` of ``L_sym`` of ``W[:b, :b]``, the text up to and with
  the step.
* ``prefix_delta``: ``prefix_fiedler`` minus the previous step's (its own ``prefix_fiedler``
  for the first step, against the empty prefix's 0): how adding the step changes the
  prefix graph's connectivity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from . import spectral as sp
from .eigen import extreme_eigvals

STEP_FEATURES = (
    "received",
    "received_per_token",
    "diagonal",
    "block_fiedler",
    "prefix_fiedler",
    "prefix_delta",
)


def _fiedler(A: Tensor) -> Tensor:
    """``lambda_2`` of ``L_sym`` of ``(A + A^T) / 2`` for a causal block ``A`` ``(n, n)``
    (the capture's solver on the Laplacian's lower triangle); 0 below two nodes."""
    if A.shape[-1] < 2:
        return A.new_zeros(())
    L = sp.causal_laplacian_lower(A.unsqueeze(0), "sym")
    return sp.clamp_spectrum(extreme_eigvals(L, 2, 0).low)[0, 1]


def step_features(A: Tensor, spans: Sequence[tuple[int, int]]) -> Tensor:
    """``(S, len(STEP_FEATURES))`` float64 features of ``S`` steps of one layer.

    Args:
        A: ``(T, T)`` causal attention over the analysed span (any float dtype).
        spans: each step's token span ``[a, b)`` within that span, in order; empty spans
            give NaN rows.

    Example:
        >>> A = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]])
        >>> step_features(A, [(0, 1), (1, 3)])[:, 0]  # received
        tensor([0.3500,    nan], dtype=torch.float64)
    """
    A = A.to(torch.float64)
    T = A.shape[-1]
    diag = sp.causal_laplacian_lower(A, "sym").diagonal()
    out = torch.full((len(spans), len(STEP_FEATURES)), float("nan"), dtype=torch.float64)
    previous = A.new_zeros(())
    for k, (a, b) in enumerate(spans):
        if b <= a:
            continue
        received = A[b:, a:b].sum(dim=-1).mean() if b < T else A.new_tensor(float("nan"))
        prefix = _fiedler(A[:b, :b])
        out[k] = torch.stack(
            [
                received,
                received / (b - a),
                diag[a:b].mean(),
                _fiedler(A[a:b, a:b]),
                prefix,
                prefix - previous,
            ]
        )
        previous = prefix
    return out
