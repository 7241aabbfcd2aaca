"""Intra-op thread settings, chosen per job and restored after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (``None``: leave as is), then restore.

    Small problems (a calibrator's ``(N, F)`` logistic fit, one ``eigh`` per worker) are
    run on one thread: with two OpenMP threads and the second core busy, a cross-validation
    of 400 x 1,500 features took 3x longer, against 15% faster on an idle machine
    (``benchmarks/bench_fit.py``, docs/benchmark.md)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
