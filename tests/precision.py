"""How far features computed at another precision (or on another device) may lie from the
CPU float32 reference: the tolerances the CPU bfloat16 test and the CUDA tests share.

A deviation is measured against its column's scale (the largest ``|value|`` of that
feature over the texts), so that eigenvalues near 2 and log-determinants near -200 are
judged alike. bfloat16 keeps 8 bits of mantissa in every weight and activation of the
model, so its features move: the bounds below were measured on the embedded model
(README, "GPU and multi-GPU") and are set with a margin over what was seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: (median, 95th percentile, max) of |delta| / column scale over every spectral value.
TOLERANCE = {
    # Another device, the same precision: only summation order differs.
    "float32": (1e-5, 1e-4, 1e-3),
    # Seen on 12 CHAMP texts (CPU, heads mean / each): median 0.0036 / 0.0018, 95th
    # percentile 0.023 / 0.016, max 0.091 / 0.124.
    "bfloat16": (0.01, 0.06, 0.4),
}
#: Confounds (mean log-probability, entropy), absolute, in nats (bfloat16 seen: 0.0069).
CONFOUND_TOLERANCE = {"float32": 1e-4, "bfloat16": 0.03}


@dataclass
class Agreement:
    median: float
    p95: float
    max: float
    confound: float

    def within(self, precision: str) -> bool:
        med, p95, top = TOLERANCE[precision]
        return (
            self.median <= med
            and self.p95 <= p95
            and self.max <= top
            and self.confound <= CONFOUND_TOLERANCE[precision]
        )


def agreement(ref: np.ndarray, got: np.ndarray, names: list[str]) -> Agreement:
    """Deviation of ``got`` from ``ref`` ``(N, F)``: spectral columns relative to their
    scale, the log-probability and entropy confounds in absolute terms. The hidden-state
    probe's columns are left out (they are not spectra: a raw activation mean)."""
    spectral = [i for i, n in enumerate(names) if not n.startswith(("confound/", "hidden_mean/"))]
    conf = [names.index(n) for n in ("confound/logprob", "confound/entropy")]
    x, y = ref[:, spectral], got[:, spectral]
    assert np.isfinite(x).all() and np.isfinite(y).all()
    rel = np.abs(x - y) / (np.abs(x).max(axis=0) + 1e-12)
    return Agreement(
        median=float(np.median(rel)),
        p95=float(np.quantile(rel, 0.95)),
        max=float(rel.max()),
        confound=float(np.abs(ref[:, conf] - got[:, conf]).max()),
    )


def champ_texts(tokenizer, n: int = 12, max_tokens: int = 256) -> list[str]:
    """``n`` CHAMP solutions (both labels), each cut to at most ``max_tokens`` tokens."""
    from probes.data import BUILDERS

    records = BUILDERS["champ"](seed=0)[:n]
    texts = []
    for r in records:
        ids = tokenizer(r.full_text, add_special_tokens=False)["input_ids"][:max_tokens]
        texts.append(tokenizer.decode(ids))
    return texts
