"""Independent dense NumPy/SciPy references for the spectral features (no torch)."""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg


def random_causal_attention(rng: np.random.Generator, heads: int, T: int) -> np.ndarray:
    """(heads, T, T) lower-triangular, row-stochastic, with peaked rows like real attention."""
    logits = rng.normal(scale=2.0, size=(heads, T, T))
    logits[:, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] = -np.inf
    A = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return A / A.sum(axis=-1, keepdims=True)


def laplacians(W: np.ndarray) -> dict[str, np.ndarray]:
    d = W.sum(axis=1)
    D = np.diag(d)
    Dm12 = np.diag(1 / np.sqrt(d))
    return {
        "combinatorial": D - W,
        "sym": np.eye(len(d)) - Dm12 @ W @ Dm12,
        "rw": np.eye(len(d)) - np.diag(1 / d) @ W,
    }


def spectrum(W: np.ndarray, kind: str) -> np.ndarray:
    """Ascending eigenvalues; rw through SciPy's GENERAL eigensolver on the non-symmetric L_rw."""
    L = laplacians(W)[kind]
    if kind == "rw":
        vals = scipy.linalg.eigvals(L)
        assert np.abs(vals.imag).max() < 1e-9
        vals = np.sort(vals.real)
    else:
        vals = scipy.linalg.eigh(L, eigvals_only=True)
    return np.clip(vals, 0, None)


def _entropy(w: np.ndarray) -> float:
    p = w / w.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _clip(i: int, n: int) -> int:
    return min(max(i, 0), n - 1)


def layer_features(
    A: np.ndarray, X: np.ndarray, kind: str, k: int, heads: str, hfer_fraction: float = 0.1
) -> dict[str, list[float]]:
    """graph family -> values (heads 'each': head-major, then k) for one layer.

    A: (H, T, T) attention; X: (T, D) hidden states.
    """
    graphs = [A.mean(axis=0)] if heads == "mean" else list(A)
    out: dict[str, list[float]] = {}

    def add(name, vals):
        out.setdefault(name, []).extend(vals)

    for a in graphs:
        T = a.shape[0]
        W = (a + a.T) / 2
        lam = spectrum(W, kind)
        add("eig_low", [lam[_clip(i, T)] for i in range(1, k + 1)])
        add("eig_high", [lam[_clip(T - 1 - i, T)] for i in range(k)])
        sym = spectrum(W, "sym")
        add("fiedler", [sym[1]])
        add("gap", [lam[1] - lam[0]])
        add("eigengap", [max(lam[i + 1] - lam[i] for i in range(min(k, T - 1)))])
        add("eig_entropy", [_entropy(lam)])
        add("eig_mean", [lam.mean()])
        add("eig_std", [lam.std()])
        # Directed causal Laplacian, built densely and solved with a general eigensolver.
        d_in = a.sum(axis=0) / (T - np.arange(T))
        Ld = np.diag(d_in) - a
        lap = np.sort(scipy.linalg.eigvals(Ld).real)[::-1]
        add("lapeig_single", [lap[_clip(i, T)] for i in range(k)])
        # Graph-signal features straight from their definitions; under rw on the literal,
        # non-symmetric L_rw with SciPy's general eigensolver (Geometry of Reason's default).
        L = laplacians(W)[kind]
        if kind == "rw":
            vals, U = scipy.linalg.eig(L)
            order = np.argsort(vals.real)
            U = U[:, order].real
            U /= np.linalg.norm(U, axis=0)
        else:
            vals, U = scipy.linalg.eigh(L)
        energy = np.trace(X.T @ L @ X)
        power = ((U.T @ X) ** 2).sum(axis=1)
        n_high = max(1, math.ceil(hfer_fraction * T))
        add("energy", [energy])
        add("smoothness", [energy / np.trace(X.T @ X)])
        add("hfer", [power[-n_high:].sum() / power.sum()])
        add("signal_entropy", [_entropy(power)])
    return out
