"""Confound features from the same forward pass: what a detector must beat.

Length and mean token log-probability often explain "spectral" signals; they are always
extracted beside the spectral features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: From the logits of the tokens read (after truncation at ``max_tokens``).
TOKEN_CONFOUNDS = (
    "confound/n_tokens",
    "confound/logprob",
    "confound/perplexity",
    "confound/entropy",
)
#: The length of the whole analysed span, measured before truncation: tokens, characters
#: and steps (non-blank lines). A length baseline needs these: a capped ``n_tokens`` gives
#: every long solution the same length.
LENGTH_CONFOUNDS = ("confound/n_tokens_full", "confound/n_chars", "confound/n_steps")
CONFOUND_NAMES = TOKEN_CONFOUNDS + LENGTH_CONFOUNDS


def length_confounds(tokens) -> Tensor:
    """``(3,)`` float64 in :data:`LENGTH_CONFOUNDS` order, from a ``Tokenized``."""
    return torch.tensor([tokens.n_tokens_full, tokens.n_chars, tokens.n_steps], dtype=torch.float64)


def token_confounds(
    logits: Tensor | Callable[[slice], Tensor], ids: Tensor, span_start: int = 0, block: int = 128
) -> Tensor:
    """Length, mean log-prob, perplexity and mean predictive entropy of one text's span.

    Token ``t`` is predicted by ``logits[t - 1]``; the statistics average over the span's
    predicted tokens ``max(span_start, 1) .. T - 1``.

    Args:
        logits: ``(T, V)`` next-token logits of one text, or a function that returns the
            ``(n, V)`` logits of a slice of positions (the capture computes them block by
            block from the LM head's input, so that no ``(T, V)`` tensor exists).
        ids: ``(T,)`` its token ids.
        span_start: first analysed token.
        block: positions per chunk (bounds the temporary ``(block, V)`` tensors).

    Returns:
        ``(4,)`` float64 in :data:`TOKEN_CONFOUNDS` order.

    Example:
        >>> logits = torch.zeros(3, 4)  # uniform over 4 tokens
        >>> token_confounds(logits, torch.tensor([0, 1, 2]))
        tensor([ 3.0000, -1.3863,  4.0000,  1.3863], dtype=torch.float64)
    """
    T = ids.shape[0]
    first = max(span_start, 1)
    sum_logp = torch.zeros((), dtype=torch.float64)
    sum_ent = torch.zeros((), dtype=torch.float64)
    # float32 in row blocks: a float64 copy of (T, V) logits cost ~0.5 s and 600 MB at
    # T = 512, V = 49152; sums are still accumulated in float64.
    rows = logits if callable(logits) else logits.__getitem__
    for lo in range(first, T, block):
        hi = min(lo + block, T)
        logp = torch.log_softmax(rows(slice(lo - 1, hi - 1)).float(), dim=-1)  # (n, V)
        target = ids[lo:hi].to(logp.device)  # (n,)
        sum_logp += logp.gather(-1, target.unsqueeze(-1)).sum().double().cpu()
        sum_ent += -(logp.exp() * logp).sum().double().cpu()
    n = T - first
    mean_logp = sum_logp / n
    n_tokens = torch.tensor(float(T - span_start), dtype=torch.float64)
    return torch.stack([n_tokens, mean_logp, (-mean_logp).exp(), sum_ent / n])
