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


def token_scores(
    logits: Tensor | Callable[[slice], Tensor], ids: Tensor, first: int = 1, block: int = 128
) -> tuple[Tensor, Tensor]:
    """Log-probability and predictive entropy of each token ``first .. T - 1`` of one text.

    Token ``t`` is predicted by ``logits[t - 1]``, so ``first >= 1``.

    Args:
        logits: ``(T, V)`` next-token logits of one text, or a function that returns the
            ``(n, V)`` logits of a slice of positions (the capture computes them block by
            block from the LM head's input, so that no ``(T, V)`` tensor exists).
        ids: ``(T,)`` its token ids.
        block: positions per chunk (bounds the temporary ``(block, V)`` tensors).

    Returns:
        ``(T - first,)`` float64 log-probabilities and ``(T - first,)`` entropies (nats).
    """
    T = ids.shape[0]
    rows = logits if callable(logits) else logits.__getitem__
    logps, ents = [], []
    # float32 in row blocks: a float64 copy of (T, V) logits cost ~0.5 s and 600 MB at
    # T = 512, V = 49152; each token's sum over V is still taken in float64.
    for lo in range(first, T, block):
        hi = min(lo + block, T)
        logp = torch.log_softmax(rows(slice(lo - 1, hi - 1)).float(), dim=-1)  # (n, V)
        target = ids[lo:hi].to(logp.device)  # (n,)
        logps.append(logp.gather(-1, target.unsqueeze(-1))[:, 0].double().cpu())
        ents.append(-(logp.exp() * logp).sum(dim=-1, dtype=torch.float64).cpu())
    empty = torch.empty(0, dtype=torch.float64)
    return (torch.cat(logps), torch.cat(ents)) if logps else (empty, empty)


def token_confounds(logp: Tensor, entropy: Tensor, n_tokens: int) -> Tensor:
    """Length, mean log-prob, perplexity and mean predictive entropy of one text's span.

    Args:
        logp, entropy: ``(n,)`` per-token scores of the span's predicted tokens
            (:func:`token_scores` from ``max(span_start, 1)``).
        n_tokens: the span's length in tokens.

    Returns:
        ``(4,)`` float64 in :data:`TOKEN_CONFOUNDS` order.

    Example:
        >>> logp, ent = token_scores(torch.zeros(3, 4), torch.tensor([0, 1, 2]))  # uniform
        >>> token_confounds(logp, ent, 3)
        tensor([ 3.0000, -1.3863,  4.0000,  1.3863], dtype=torch.float64)
    """
    mean_logp = logp.mean()
    n = torch.tensor(float(n_tokens), dtype=torch.float64)
    return torch.stack([n, mean_logp, (-mean_logp).exp(), entropy.mean()])


#: Per-step confounds (``probes.stepfeatures``), from the same per-token scores.
STEP_CONFOUNDS = ("step_confound/n_tokens", "step_confound/logprob", "step_confound/entropy")


def step_confounds(logp: Tensor, entropy: Tensor, spans, offset: int) -> Tensor:
    """``(S, 3)`` token count, mean log-prob and mean entropy of each step's tokens.

    Args:
        logp, entropy: per-token scores; ``logp[i]`` is token ``offset + i``'s.
        spans: each step's tokens ``[first, stop)``, in the same positions as ``offset``;
            a step's tokens before ``offset`` (the text's first, which nothing predicts)
            count in ``n_tokens`` but not in the means.

    Example:
        >>> step_confounds(torch.tensor([-1.0, -2, -3]), torch.ones(3), [(0, 2), (2, 4)], 1)
        tensor([[ 2.0000, -1.0000,  1.0000],
                [ 2.0000, -2.5000,  1.0000]], dtype=torch.float64)
    """
    out = torch.full((len(spans), len(STEP_CONFOUNDS)), float("nan"), dtype=torch.float64)
    for k, (first, stop) in enumerate(spans):
        lo, hi = max(first - offset, 0), stop - offset
        out[k, 0] = max(stop - first, 0)
        if hi > lo:
            out[k, 1] = logp[lo:hi].mean()
            out[k, 2] = entropy[lo:hi].mean()
    return out
