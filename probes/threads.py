"""Intra-op thread settings, chosen per job and restored after it."""

from __future__ import annotations

import contextlib
import functools
import threading
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
    # The controller sees only the libraries loaded when it is made: SciPy's own OpenBLAS
    # (the one the eigensolver's LAPACK calls run on) loads with scipy.linalg, so load it
    # first, or its pool would never be limited.
    import scipy.linalg  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_lapack_lock = threading.Lock()
_lapack_users = 0
_lapack_limit = None  # the active threadpoolctl limit while any thread is inside


@contextlib.contextmanager
def lapack_threads(n: int | None) -> Iterator[None]:
    """Run the block with the BLAS libraries that SciPy and NumPy load (OpenBLAS) on ``n``
    threads (``None``: leave as is), then restore.

    Their thread pools are their own, not torch's: the mixed-precision eigensolver's LAPACK
    calls (:mod:`probes.eigen`) would otherwise start two threads per call inside each of
    the capture's single-threaded solver workers, and those threads spin against torch's.

    The setting is process-wide, and threadpoolctl lets only one thread (the first to set a
    limit, while it lives) change OpenBLAS's; calls from other threads are ignored. So a
    thread that runs solvers in worker threads holds this block around them, as the
    capture does; the workers' own blocks inside it then change nothing (the first to enter
    sets the limit, the last to leave restores it).
    """
    global _lapack_users, _lapack_limit
    if n is None:
        yield
        return
    with _lapack_lock:
        if _lapack_users == 0:
            _lapack_limit = _blas_controller().limit(limits=n, user_api="blas")
        _lapack_users += 1
    try:
        yield
    finally:
        with _lapack_lock:
            _lapack_users -= 1
            if _lapack_users == 0:
                _lapack_limit.restore_original_limits()
                _lapack_limit = None
