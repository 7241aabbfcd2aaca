"""Confound features from the same forward pass: what a detector must beat.

Length and mean token log-probability often explain "spectral" signals; they are always
extracted beside the spectral features.
"""

from __future__ import annotations

import torch
from torch import Tensor

CONFOUND_NAMES = (
    "confound/n_tokens",
    "confound/logprob",
    "confound/perplexity",
    "confound/entropy",
)


def token_confounds(logits: Tensor, ids: Tensor, span_start: int = 0) -> Tensor:
    """Length, mean log-prob, perplexity and mean predictive entropy of one text's span.

    Token ``t`` is predicted by ``logits[t - 1]``; the statistics average over the span's
    predicted tokens ``max(span_start, 1) .. T - 1``.

    Args:
        logits: ``(T, V)`` next-token logits of one text.
        ids: ``(T,)`` its token ids.
        span_start: first analysed token.

    Returns:
        ``(4,)`` float64 in :data:`CONFOUND_NAMES` order.

    Example:
        >>> logits = torch.zeros(3, 4)  # uniform over 4 tokens
        >>> token_confounds(logits, torch.tensor([0, 1, 2]))
        tensor([ 3.0000, -1.3863,  4.0000,  1.3863], dtype=torch.float64)
    """
    T = ids.shape[0]
    first = max(span_start, 1)
    logp = torch.log_softmax(logits[first - 1 : T - 1].double(), dim=-1)  # (n, V)
    target = ids[first:T].to(logp.device)  # (n,)
    token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (n,)
    mean_logp = token_logp.mean()
    ent = -(logp.exp() * logp).sum(dim=-1).mean()
    n_tokens = torch.tensor(float(T - span_start), dtype=torch.float64)
    return torch.stack([n_tokens, mean_logp.cpu(), (-mean_logp).exp().cpu(), ent.cpu()])
