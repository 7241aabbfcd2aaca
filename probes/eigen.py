"""The extreme eigenvalues of symmetric Laplacians, certified, without a float64 full
decomposition.

Most spectral features need a few eigenvalues at either end of the spectrum (``eig_low``,
``fiedler``, ``gap``, ``eigengap``, ``eig_high``). A dense float64 ``eigvalsh`` computes all
``T`` of them, and its Householder tridiagonalization (``4/3 T^3`` flops, half of them
matrix-vector products) is the whole cost. The ``mixed`` method:

1. reduces the float32 copy of ``L`` to tridiagonal form and computes, in float64, the
   eigenpairs of that tridiagonal at the two ends only (LAPACK ``ssytrd``, ``stebz`` +
   ``stein``, ``sormqr``; on CUDA a batched float32 ``eigh``). Float32 is backward stable:
   its eigenvalues ``mu`` lie within ``eta`` of the true ones, about ``1e-7`` for ``L_sym``;
2. refines each end in float64 by Rayleigh-Ritz on the span ``Q`` of those vectors and
   ``GUARD`` more: ``H = Q^T L Q``, Ritz values ``theta`` and the residual
   ``R = L Q Y - Q Y diag(theta)``;
3. certifies the result with the quadratic residual bound (Mathias 1998; Nakatsukasa
   2017): for the ``c`` Ritz pairs at the end, when they are separated by ``delta`` from the
   rest of the spectrum, ``|lambda_i - theta_i| <= ||R_c||_F^2 / delta``. ``delta`` is
   measured from the float32 eigenvalue just past the block, less ``eta``
   (:data:`ETA_UNITS`). The block is the wanted values plus up to ``GUARD`` more, whichever
   size gives the best bound, so that a cluster at the edge is taken whole. A graph is
   accepted only when that bound is at most :data:`CERTIFIED` and every ``theta_i`` is
   within ``eta`` of its ``mu_i`` (the vectors belong to the eigenvalues they claim). Any
   other graph (a cluster wider than the guard, a disconnected graph with more zero
   eigenvalues than the block holds, a LAPACK failure) is solved again by the dense
   float64 solver and counted as a fallback.

The float32 residuals are about ``1e-6``, so the refined values are typically exact to
``1e-12`` and always, when accepted, to :data:`CERTIFIED`. Every public function takes
``(G, T, T)`` float64 batches and returns float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .threads import lapack_threads

#: The stated accuracy of every spectral feature: absolute error against the float64 dense
#: value (README, store manifests; ``tests/test_eigen.py`` checks it on real graphs).
ACCURACY = 1e-6
#: A refined eigenvalue is accepted only when its error bound is at most this.
CERTIFIED = 1e-8
#: Extra Ritz vectors at each end: the certified block may grow by up to this many past the
#: wanted values, to take a cluster at its edge whole.
GUARD = 6
#: ``eta``, the float32 eigenvalues' error allowance, in units of ``eps32 * max|mu|``: on
#: real per-head graphs of 800 tokens the largest error seen was 2.5 units (median 0.8).
ETA_UNITS = 32.0
#: The ``T`` range, per device type, in which ``mixed`` was measured faster than the dense
#: solver; ``auto`` is dense outside it (``benchmarks/bench_eigen.py``, docs/benchmark.md).
#: On 2 CPU cores, one thread per solve, torch 2.13's float64 ``eigvalsh`` (MKL) against
#: SciPy's float32 ``ssytrd`` (OpenBLAS): mixed is 1.25-1.42x faster from 768 to 1,024
#: tokens, even at 640, slower below, and slower again from 1,152 on, where MKL's dense
#: solver speeds up (69 ms at 1,152 against 84 ms at 1,024). No CUDA measurement yet:
#: ``auto`` is dense there until one is made.
MIXED_RANGE = {"cpu": (704, 1088)}
METHODS = ("auto", "dense", "mixed")
#: The float32 stage on CPU: ``lapack`` (one tridiagonalization, selected pairs: the fast
#: path) or ``torch`` (a batched float32 ``eigh``, the path CUDA takes; tests run it on CPU).
CPU_STAGE = "lapack"


@dataclass
class Extremes:
    """The ends of ``G`` spectra.

    Attributes:
        low: ``(G, n_low)`` the smallest eigenvalues, ascending.
        high: ``(G, n_high)`` the largest eigenvalues, ascending.
        refined: graphs whose values come from the certified refinement.
        fallbacks: graphs the refinement could not certify, solved densely instead.
    """

    low: Tensor
    high: Tensor
    refined: int = 0
    fallbacks: int = 0


def resolve_method(method: str, T: int, device: torch.device) -> str:
    """``dense`` or ``mixed`` for ``T``-node graphs on ``device`` (``auto`` by measurement)."""
    if method not in METHODS:
        raise ValueError(f"unknown eigenvalue method {method!r}; choose one of {METHODS}")
    if method != "auto":
        return method
    lo, hi = MIXED_RANGE.get(device.type, (0, -1))
    return "mixed" if lo <= T <= hi else "dense"


def extreme_eigvals(L: Tensor, n_low: int, n_high: int, method: str = "auto") -> Extremes:
    """The ``n_low`` smallest and ``n_high`` largest eigenvalues of each symmetric ``L``.

    Args:
        L: ``(G, T, T)`` float64; only the lower triangle is read (as LAPACK reads it).
        n_low, n_high: how many at each end (0 for none; clipped to ``T``).
        method: ``dense`` (float64 ``eigvalsh``), ``mixed`` (see the module docstring) or
            ``auto`` (:func:`resolve_method`).

    Returns:
        :class:`Extremes`, float64, on ``L``'s device.
    """
    G, T, _ = L.shape
    n_low, n_high = min(n_low, T), min(n_high, T)
    method = resolve_method(method, T, L.device)
    wide = n_low + n_high + 2 * (GUARD + 1) > T  # the two blocks would meet: nothing to save
    if method == "dense" or wide or G == 0:
        return _ends(torch.linalg.eigvalsh(L), n_low, n_high)
    low_idx = list(range(n_low + GUARD + 1)) if n_low else []  # the last one lies outside
    high_idx = list(range(T - n_high - GUARD - 1, T)) if n_high else []  # the first: outside
    mu, V, ok = _float32_pairs(L, low_idx + high_idx)  # (G, m), (G, T, m), (G,)
    low = high = None
    if n_low:
        m = len(low_idx) - 1  # the last one lies outside
        theta, good = _refine(L, V[..., :m], mu[:, :m], mu[:, m], n_low, "low")
        low, ok = theta[:, :n_low], ok & good
    if n_high:
        m = len(high_idx) - 1  # the first one lies outside
        theta, good = _refine(L, V[..., -m:], mu[:, -m:], mu[:, -m - 1], n_high, "high")
        high, ok = theta[:, -n_high:], ok & good
    empty = L.new_zeros(G, 0)
    low = empty if low is None else low
    high = empty if high is None else high
    bad = (~ok).nonzero().flatten()
    if len(bad):
        dense = _ends(torch.linalg.eigvalsh(L[bad]), n_low, n_high)
        low, high = low.clone(), high.clone()
        low[bad], high[bad] = dense.low, dense.high
    return Extremes(low, high, refined=G - len(bad), fallbacks=len(bad))


def _ends(vals: Tensor, n_low: int, n_high: int) -> Extremes:
    T = vals.shape[-1]
    return Extremes(vals[..., :n_low], vals[..., T - n_high :])


def _float32_pairs(L: Tensor, idx: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    """Float32 eigenpairs ``idx`` (ascending order) of every graph.

    Returns ``mu`` ``(G, m)`` float64, vectors ``(G, T, m)`` float32 and ``ok`` ``(G,)``
    (False where LAPACK reported a failure).
    """
    if L.device.type != "cpu" or CPU_STAGE == "torch":
        vals, vecs = torch.linalg.eigh(L.to(torch.float32))  # batched on the device
        sel = torch.as_tensor(idx, device=L.device)
        ok = torch.isfinite(vals).all(dim=-1)
        return vals[:, sel].double(), vecs[..., sel], ok
    G, T, _ = L.shape
    mu = np.zeros((G, len(idx)))
    V = np.zeros((G, T, len(idx)), dtype=np.float32)
    ok = np.ones(G, dtype=bool)
    # One OpenBLAS thread: its threads spin after each call and, against torch's OpenMP
    # threads on the same cores, slowed the next torch op (a QR of (9, 178, 7)) 100-fold.
    with lapack_threads(1):
        for g in range(G):
            try:
                mu[g], V[g] = _lapack_pairs(L[g], idx)
            except (np.linalg.LinAlgError, ValueError):
                ok[g] = False
    return torch.from_numpy(mu), torch.from_numpy(V), torch.from_numpy(ok)


def _lapack_pairs(L: Tensor, idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """One tridiagonalization, then only the eigenpairs ``idx``: ``(m,)``, ``(T, m)``."""
    from scipy.linalg import eigh_tridiagonal, lapack

    T = L.shape[-1]
    a = L.to(torch.float32).numpy()
    lwork = max(1, int(lapack.ssytrd_lwork(T, lower=1)[0]))
    c, d, e, tau, info = lapack.ssytrd(a, lower=1, lwork=lwork, overwrite_a=1)
    if info:
        raise np.linalg.LinAlgError(f"ssytrd info {info}")
    d, e = d.astype(np.float64), e.astype(np.float64)
    vals, vecs = [], []
    for run in _runs(idx):
        w, v = eigh_tridiagonal(d, e, select="i", select_range=(run[0], run[-1]))
        vals.append(w)
        vecs.append(v)
    Z = np.ascontiguousarray(np.concatenate(vecs, axis=1), dtype=np.float32)  # (T, m)
    # Back to L's basis: Q = H(1)...H(T-1), the reflectors below the subdiagonal of c, which
    # is what ormqr applies to rows 1.. (LAPACK's ormtr for uplo = L does the same).
    Z[1:], _, info = lapack.sormqr("L", "N", c[1:, : T - 1], tau, Z[1:], lwork=64 * Z.shape[1])
    if info:
        raise np.linalg.LinAlgError(f"sormqr info {info}")
    return np.concatenate(vals), Z


def _runs(idx: list[int]) -> list[list[int]]:
    """Consecutive runs of sorted indices: ``[0, 1, 2, 9, 10] -> [[0, 1, 2], [9, 10]]``."""
    runs: list[list[int]] = []
    for i in idx:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _symmetric_matmul(L: Tensor, Q: Tensor) -> Tensor:
    """``S @ Q`` for the symmetric ``S`` whose lower triangle is ``L``'s (what LAPACK reads;
    the capture builds only that triangle)."""
    low = L.tril()
    return low @ Q + low.mT @ Q - low.diagonal(dim1=-2, dim2=-1).unsqueeze(-1) * Q


def _refine(
    L: Tensor, V: Tensor, mu: Tensor, mu_out: Tensor, n: int, side: str
) -> tuple[Tensor, Tensor]:
    """Float64 Rayleigh-Ritz on the span of ``V`` and its certificate.

    The block whose error is bounded is the ``c`` Ritz pairs at the spectrum's end, for the
    ``c`` in ``n .. m`` with the best bound: a cluster at the edge of the ``n`` wanted
    values is then taken whole rather than failing the gap test.

    Args:
        L: ``(G, T, T)`` float64.
        V: ``(G, T, m)`` approximate eigenvectors of one end, in ``mu``'s order.
        mu: ``(G, m)`` their float32 eigenvalues, ascending.
        mu_out: ``(G,)`` the float32 eigenvalue next to those ``m``, outside them.
        n: how many values at this end are wanted (``n <= m``).
        side: ``low`` (the bottom of the spectrum) or ``high``.

    Returns:
        Ritz values ``(G, m)`` ascending, and ``(G,)`` whether each graph's ``n`` wanted
        values are certified.
    """
    m = V.shape[-1]
    Q = torch.linalg.qr(V.to(torch.float64)).Q  # (G, T, m)
    LQ = _symmetric_matmul(L, Q)
    H = Q.mT @ LQ
    theta, Y = torch.linalg.eigh((H + H.mT) / 2)  # (G, m), (G, m, m)
    R = LQ @ Y - (Q @ Y) * theta.unsqueeze(-2)
    res = R.square().sum(dim=-2)  # (G, m) squared residual norm of each Ritz pair
    scale = mu.abs().amax(dim=-1, keepdim=True).clamp_min(1e-30)
    eta = ETA_UNITS * torch.finfo(torch.float32).eps * scale  # (G, 1)
    # The vectors belong to the eigenvalues they claim: the refined values are within the
    # float32 allowance of the float32 ones.
    same = (theta - mu).abs().amax(dim=-1, keepdim=True) <= eta
    beyond = torch.cat([mu, mu_out.unsqueeze(-1)], dim=-1) if side == "low" else None
    if side == "high":  # mirror, so that the block is always the first c columns
        theta_s, res = -theta.flip(-1), res.flip(-1)
        beyond = -torch.cat([mu_out.unsqueeze(-1), mu], dim=-1).flip(-1)
    else:
        theta_s = theta
    c = torch.arange(n, m + 1, device=L.device)  # candidate block sizes
    outside = beyond[:, c]  # (G, len(c)) the float32 eigenvalue just past the block
    delta = (outside - eta) - theta_s[:, c - 1]
    bound = res.cumsum(dim=-1)[:, c - 1] / delta.clamp_min(torch.finfo(torch.float64).tiny)
    certified = ((delta > 0) & (bound <= CERTIFIED)).any(dim=-1)
    ok = certified & same.squeeze(-1) & torch.isfinite(theta).all(dim=-1)
    return theta, ok
