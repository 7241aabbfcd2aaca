"""Intra-op thread settings, chosen per job and restored after it."""

from __future__ import annotations

import contextlib
import functools
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


@functools.cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def lapack_threads(n: int | None) -> Iterator[None]:
    """Run the block with the BLAS libraries that SciPy and NumPy load (OpenBLAS) on ``n``
    threads (``None``: leave as is), then restore.

    Their thread pools are their own, not torch's: the mixed-precision eigensolver's LAPACK
    calls (:mod:`probes.eigen`) would otherwise start two threads per call inside each of
    the capture's single-threaded solver workers. The setting is process-wide, so only the
    thread that starts and waits for the solves enters this block.
    """
    if n is None:
        yield
        return
    with _blas_controller().limit(limits=n, user_api="blas"):
        yield
