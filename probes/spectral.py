"""Exact spectral mathematics of attention graphs: pure tensor functions.

Every function takes tensors batched over any leading dimensions (``...``), never
modifies its inputs, and imports nothing from transformers. ``A`` is one head's (or a
head-mean) attention matrix of shape ``(..., T, T)``: row ``i`` is query token ``i``,
rows sum to 1 and a causal model has ``A[i, j] = 0`` for ``j > i``.

Undirected graph: ``W = (A + A^T) / 2`` with degrees ``d = W 1``.

* combinatorial ``L = D - W``
* normalized ``L_sym = I - D^-1/2 W D^-1/2`` (eigenvalues in ``[0, 2]``)
* random-walk ``L_rw = I - D^-1 W``: similar to ``L_sym`` (``L_rw = D^-1/2 L_sym D^1/2``),
  so its spectrum is computed through ``L_sym``. ``L_rw`` is not symmetric: passing it to
  ``eigh``/``eigvalsh`` would read one triangle only and return the spectrum of another
  matrix, the bug of the article that inspired this project.

Directed causal graph (LapEigvals): ``L = D_in - A`` with
``D_in[j, j] = sum_i A[i, j] / (T - j)``. ``L`` is lower-triangular, so its eigenvalues
are its diagonal: no eigensolver is needed.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

LaplacianKind = Literal["combinatorial", "sym", "rw"]
LAPLACIAN_KINDS: tuple[str, ...] = ("combinatorial", "sym", "rw")

#: Eigenvalues above this (and below 0) are rounding error and are clamped to 0; anything
#: more negative means a bug (a Laplacian is positive semi-definite) and raises. In float32
#: the bound widens to the solver's rounding, ``ROUNDING_ULPS * eps * max|lambda|`` (a 512 x
#: 512 ``L_sym`` gave -1.07e-6 in float32).
NEGATIVE_TOLERANCE = 1e-6
ROUNDING_ULPS = 128


def negative_tolerance(vals: Tensor) -> float:
    """How far below 0 the eigenvalues ``vals`` may fall by rounding alone."""
    if not vals.numel():
        return NEGATIVE_TOLERANCE
    scale = float(vals.abs().max())
    return max(NEGATIVE_TOLERANCE, ROUNDING_ULPS * torch.finfo(vals.dtype).eps * scale)


class NegativeEigenvalueError(ValueError):
    """A Laplacian eigenvalue below ``-negative_tolerance``: the input was not a valid graph.

    ``index`` is the position in the leading (batch) dimensions of the first offender.
    """

    def __init__(self, value: float, index: tuple[int, ...], tolerance: float = NEGATIVE_TOLERANCE):
        self.value = value
        self.index = index
        super().__init__(
            f"Laplacian eigenvalue {value:.3g} < -{tolerance:.3g} at batch index {index}: "
            "the input is not a valid (non-negative, symmetric) graph"
        )


def symmetrize(A: Tensor) -> Tensor:
    """Undirected adjacency ``W = (A + A^T) / 2``.

    Args:
        A: ``(..., T, T)`` attention.

    Returns:
        ``(..., T, T)`` symmetric ``W``.

    Example:
        >>> symmetrize(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
        tensor([[1.0000, 0.2500],
                [0.2500, 0.5000]])
    """
    return (A + A.transpose(-1, -2)) / 2


def degrees(W: Tensor) -> Tensor:
    """Weighted degrees ``d = W 1``: ``(..., T, T) -> (..., T)``."""
    return W.sum(dim=-1)


def _inv_sqrt_degrees(W: Tensor) -> Tensor:
    # An isolated node (degree 0, only possible in a sub-span) gets 0 instead of inf.
    d = degrees(W)
    safe = torch.where(d > 0, d, torch.ones_like(d))
    return torch.where(d > 0, safe.rsqrt(), torch.zeros_like(d))


def combinatorial_laplacian(W: Tensor) -> Tensor:
    """``L = D - W``: ``(..., T, T) -> (..., T, T)``, symmetric when ``W`` is."""
    return torch.diag_embed(degrees(W)) - W


def normalized_laplacian(W: Tensor) -> Tensor:
    """``L_sym = I - D^-1/2 W D^-1/2``: ``(..., T, T) -> (..., T, T)``, symmetric.

    An isolated node (degree 0) has a zero row and column (Chung's convention, networkx's
    ``normalized_laplacian_matrix``): its eigenvalue is 0, so a graph with one has a Fiedler
    value of 0, as any disconnected graph.

    Example:
        >>> normalized_laplacian(torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
        tensor([[ 1., -1.,  0.],
                [-1.,  1.,  0.],
                [ 0.,  0.,  0.]])
    """
    s = _inv_sqrt_degrees(W)  # (..., T)
    connected = torch.diag_embed((s > 0).to(W.dtype))  # I, less the isolated nodes
    return connected - s.unsqueeze(-1) * W * s.unsqueeze(-2)


def random_walk_laplacian(W: Tensor) -> Tensor:
    """``L_rw = I - D^-1 W``: ``(..., T, T) -> (..., T, T)``. NOT symmetric.

    Provided for reference and tests; its spectrum is that of :func:`normalized_laplacian`,
    which is what :func:`laplacian_eigvals` uses for ``kind="rw"``.
    """
    d = degrees(W)
    inv = torch.where(d > 0, 1 / torch.where(d > 0, d, torch.ones_like(d)), torch.zeros_like(d))
    return torch.diag_embed((d > 0).to(W.dtype)) - inv.unsqueeze(-1) * W


def symmetric_laplacian(W: Tensor, kind: LaplacianKind) -> Tensor:
    """The symmetric matrix whose spectrum is that of the ``kind`` Laplacian of ``W``.

    ``combinatorial`` gives ``D - W``; ``sym`` and ``rw`` give ``L_sym`` (``L_rw`` is similar
    to it). Shape ``(..., T, T) -> (..., T, T)``.
    """
    if kind == "combinatorial":
        return combinatorial_laplacian(W)
    if kind in ("sym", "rw"):
        return normalized_laplacian(W)
    raise ValueError(f"unknown Laplacian kind {kind!r}; choose one of {LAPLACIAN_KINDS}")


def causal_laplacian_lower(A: Tensor, kind: LaplacianKind) -> Tensor:
    """The lower triangle of :func:`symmetric_laplacian` of ``W = (A + A^T) / 2`` for a
    causal ``A``, built without forming ``W``; zero above the diagonal.

    Symmetric eigensolvers (LAPACK, ``torch.linalg.eigvalsh`` with its default
    ``UPLO="L"``) read only that triangle. ``A`` is lower-triangular, so below the diagonal
    ``W_ij = A_ij / 2`` and the transposed half is never needed: this saves the strided
    transpose of ``symmetrize``, which cost as much as the rest of building ``L`` on
    1,024-token graphs. ``(..., T, T) -> (..., T, T)``, a new tensor.

    Raises:
        ValueError: ``A`` has a non-zero entry above the diagonal (not causal).

    Example:
        >>> A = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
        >>> causal_laplacian_lower(A, "combinatorial").tril()  # above the diagonal: unread
        tensor([[ 0.2500,  0.0000],
                [-0.2500,  0.2500]], dtype=torch.float64)
    """
    if bool(A.triu(1).any()):
        raise ValueError("attention has entries above the diagonal: not a causal graph")
    d = (A.sum(dim=-1) + A.sum(dim=-2)) / 2  # degrees of W
    self_loops = A.diagonal(dim1=-2, dim2=-1)  # W_ii = A_ii
    if kind == "combinatorial":
        L = A * -0.5
        L.diagonal(dim1=-2, dim2=-1).copy_(d - self_loops)
        return L
    if kind not in ("sym", "rw"):
        raise ValueError(f"unknown Laplacian kind {kind!r}; choose one of {LAPLACIAN_KINDS}")
    safe = torch.where(d > 0, d, torch.ones_like(d))
    s = torch.where(d > 0, safe.rsqrt(), torch.zeros_like(d))  # isolated node: 0 (Chung)
    L = A * (s.unsqueeze(-1) * -0.5)
    L.mul_(s.unsqueeze(-2))
    diag = torch.where(d > 0, 1 - self_loops * s.square(), torch.zeros_like(d))
    L.diagonal(dim1=-2, dim2=-1).copy_(diag)
    return L


def clamp_spectrum(vals: Tensor) -> Tensor:
    """Clamp rounding-level negatives to 0; raise on a real negative eigenvalue.

    Args:
        vals: ``(..., T)`` eigenvalues of a positive semi-definite matrix.

    Raises:
        NegativeEigenvalueError: some value is below ``-negative_tolerance(vals)``.
    """
    tol = negative_tolerance(vals)
    if vals.numel() and bool((vals < -tol).any()):
        flat = int(vals.argmin())
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), vals.shape))
        raise NegativeEigenvalueError(float(vals.min()), index[:-1], tol)
    return vals.clamp_min(0)


def laplacian_eigvals(
    W: Tensor, kind: LaplacianKind = "sym", dtype: torch.dtype = torch.float64
) -> Tensor:
    """Ascending eigenvalues of a Laplacian of the undirected graph ``W``.

    Args:
        W: ``(..., T, T)`` symmetric non-negative adjacency.
        kind: ``combinatorial``, ``sym`` or ``rw`` (computed through ``L_sym``).
        dtype: the eigensolver's precision.

    Returns:
        ``(..., T)`` eigenvalues, ascending, rounding negatives clamped to 0.

    Example:
        >>> W = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> laplacian_eigvals(W, "combinatorial")
        tensor([0., 2.], dtype=torch.float64)
    """
    L = symmetric_laplacian(W.to(dtype), kind)
    return clamp_spectrum(torch.linalg.eigvalsh(L))


def laplacian_eigh(
    W: Tensor, kind: LaplacianKind = "sym", dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """Eigenvalues ``(..., T)`` ascending and orthonormal eigenvectors ``(..., T, T)`` (columns).

    For ``rw`` the vectors are those of ``L_sym``, the orthonormal basis of the similar matrix.
    """
    L = symmetric_laplacian(W.to(dtype), kind)
    vals, vecs = torch.linalg.eigh(L)
    return clamp_spectrum(vals), vecs


def causal_in_degrees(A: Tensor) -> Tensor:
    """``D_in[j] = sum_i A[i, j] / (T - j)``: the mean attention key ``j`` receives from the
    ``T - j`` queries that can see it. ``(..., T, T) -> (..., T)``."""
    T = A.shape[-1]
    visible = torch.arange(T, 0, -1, dtype=A.dtype, device=A.device)  # (T,) = T - j
    return A.sum(dim=-2) / visible


def causal_laplacian(A: Tensor) -> Tensor:
    """Directed causal Laplacian ``L = D_in - A`` (lower-triangular): ``(..., T, T)``."""
    return torch.diag_embed(causal_in_degrees(A)) - A


def causal_laplacian_eigvals(A: Tensor) -> Tensor:
    """Eigenvalues of :func:`causal_laplacian`, which is triangular: its diagonal.

    Args:
        A: ``(..., T, T)`` causal (lower-triangular) attention.

    Returns:
        ``(..., T)`` eigenvalues ``D_in[j] - A[j, j]`` in token order (not sorted).

    Example:
        >>> A = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
        >>> causal_laplacian_eigvals(A)
        tensor([-0.2500,  0.0000])
    """
    return causal_in_degrees(A) - A.diagonal(dim1=-2, dim2=-1)


def lapeigvals_diagonal(
    diag: Tensor, colsum: Tensor, next_diag: Tensor | None, first: bool, last: bool
) -> Tensor:
    """Diagonal (= eigenvalues) of one layer's block of LapEigvals' cross-layer Laplacian.

    The authors' released code (``laplacian_diagonal_from_attn``) joins the layers into one
    directed graph per head: token ``j`` of layer ``l`` keeps its attention edges but, from
    the second layer on, its self-loop is dropped and replaced by an edge to token ``j`` of
    the next layer, weighted by that layer's self-attention ``A_{l+1}[j, j]``. The degree of
    key ``j`` is divided by its number of out-edges, which depends on the layer:

    * first layer: ``(sum_i A_0[i, j] + A_1[j, j]) / (T - j + 1) - A_0[j, j]`` (its self-loop
      is kept and counted);
    * middle layer: ``(sum_{i != j} A_l[i, j] + A_{l+1}[j, j]) / (T - j)``;
    * last layer: ``sum_{i != j} A_L[i, j] / (T - j - 1)``, and 0 for the last token.

    The paper's equations write the single-layer form ``D_in - A`` (``lapeig_single``); this
    follows the code, as the issue on fidelity asks, and the README says so.

    Args:
        diag: ``(..., T)`` ``A_l[j, j]`` per head.
        colsum: ``(..., T)`` ``sum_i A_l[i, j]`` per head (the diagonal included).
        next_diag: ``(..., T)`` ``A_{l+1}[j, j]``; ``None`` for the last layer.
        first, last: the layer is the model's first / last.

    Returns:
        ``(..., T)`` in token order.

    Example:
        >>> A0 = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]])
        >>> A1 = torch.tensor([[1.0, 0, 0], [0.4, 0.6, 0], [0.1, 0.1, 0.8]])
        >>> d0, d1 = A0.diagonal(), A1.diagonal()
        >>> lapeigvals_diagonal(d1, A1.sum(0), None, first=False, last=True)
        tensor([0.2500, 0.1000, 0.0000])
    """
    T = diag.shape[-1]
    out_edges = torch.arange(T, 0, -1, dtype=diag.dtype, device=diag.device)  # T - j
    if first and last:
        raise ValueError("LapEigvals' cross-layer graph needs at least two layers")
    if last:
        safe = torch.where(out_edges > 1, out_edges - 1, torch.ones_like(out_edges))
        vals = (colsum - diag) / safe
        return torch.where(out_edges > 1, vals, torch.zeros_like(vals))
    if first:
        return (colsum + next_diag) / (out_edges + 1) - diag
    return (colsum - diag + next_diag) / out_edges


def llm_check_score(diags: Tensor, floor: float = 1e-30) -> Tensor:
    """LLM-Check's attention score of one layer: the sum over heads of each head's
    ``mean_j log A_h[j, j]`` (its released ``get_attn_eig_prod`` adds the heads up).

    Diagonal entries are floored at ``floor`` (an underflowed softmax gives a large negative
    number rather than ``-inf``). ``(..., H, T) -> (...)``.
    """
    return diags.clamp_min(floor).log().mean(dim=-1).sum(dim=-1)


def attention_logdet(A: Tensor, floor: float = 1e-30) -> Tensor:
    """``mean_j log A[j, j]`` = ``log det A / T`` for triangular ``A`` (LLM-Check).

    Diagonal entries are floored at ``floor`` so that an underflowed softmax gives a large
    negative number rather than ``-inf``. ``(..., T, T) -> (...)``.

    Example:
        >>> attention_logdet(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
        tensor(-0.3466)
    """
    return A.diagonal(dim1=-2, dim2=-1).clamp_min(floor).log().mean(dim=-1)


def pick(vals: Tensor, idx: Tensor | list[int]) -> Tensor:
    """``vals[..., idx]`` with indices clipped to the last dimension (short spectra repeat
    their last value rather than fail). ``(..., T) -> (..., len(idx))``."""
    idx = torch.as_tensor(idx, device=vals.device).clamp(0, vals.shape[-1] - 1)
    return vals.index_select(-1, idx)


def fiedler_value(vals: Tensor) -> Tensor:
    """Algebraic connectivity ``lambda_2`` of ascending eigenvalues ``(..., T) -> (...)``.

    0 for a disconnected graph; a one-node graph has none and gives 0.
    """
    if vals.shape[-1] < 2:
        return torch.zeros(vals.shape[:-1], dtype=vals.dtype, device=vals.device)
    return vals[..., 1]


def spectral_gap(vals: Tensor) -> Tensor:
    """``lambda_2 - lambda_1`` of ascending eigenvalues ``(..., T) -> (...)``."""
    return pick(vals, [1])[..., 0] - vals[..., 0]


def max_eigengap(vals: Tensor, k: int) -> Tensor:
    """The largest gap ``lambda_{i+1} - lambda_i`` among the first ``k + 1`` eigenvalues.

    ``(..., T) -> (...)``; 0 when ``T == 1``.
    """
    head = vals[..., : k + 1]
    if head.shape[-1] < 2:
        return torch.zeros(vals.shape[:-1], dtype=vals.dtype, device=vals.device)
    return head.diff(dim=-1).amax(dim=-1)


def entropy(weights: Tensor) -> Tensor:
    """Shannon entropy (nats) of non-negative ``weights`` normalised along the last dim.

    ``0 log 0 = 0``; all-zero weights give 0. ``(..., n) -> (...)``.
    """
    total = weights.sum(dim=-1, keepdim=True)
    p = weights / torch.where(total > 0, total, torch.ones_like(total))
    return -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(dim=-1)


def eigenvalue_entropy(vals: Tensor) -> Tensor:
    """Entropy of ``lambda / sum(lambda)``: ``(..., T) -> (...)``. Not Geometry of Reason's
    "spectral entropy", which is the entropy of the hidden states' graph power spectrum
    (``signal_entropy`` in :func:`graph_signal_features`)."""
    return entropy(vals)


def random_walk_vectors(U: Tensor, W: Tensor) -> Tensor:
    """Unit-norm eigenvectors ``(..., T, T)`` (columns) of the literal, non-symmetric
    ``L_rw = I - D^-1 W``, from the orthonormal eigenvectors ``U`` of ``L_sym`` (same order,
    same eigenvalues).

    ``L_rw = D^-1/2 L_sym D^1/2``, so its eigenvectors are ``D^-1/2 u_i``: exact, real, and no
    general eigensolver. They are not orthogonal; each is scaled to unit norm, as a general
    solver (``scipy.linalg.eig``) returns them. An isolated node keeps its ``u_i`` entry.
    """
    s = _inv_sqrt_degrees(W).to(U.dtype)  # (..., T)
    V = U * torch.where(s > 0, s, torch.ones_like(s)).unsqueeze(-1)
    return V / V.norm(dim=-2, keepdim=True)


def graph_signal_features(
    vals: Tensor, vecs: Tensor, X: Tensor, high_fraction: float = 0.1, L: Tensor | None = None
) -> dict[str, Tensor]:
    """Graph-signal features of node signals ``X`` on a Laplacian ``U diag(vals) U^T``.

    With the graph Fourier transform ``Xhat = U^T X`` and the power at frequency ``i``,
    ``p_i = ||Xhat[i]||^2``:

    * ``energy`` = ``tr(X^T L X)`` = ``sum_i vals_i p_i`` (Dirichlet energy; with a
      non-symmetric ``L`` given, ``tr(X^T L X)`` itself, as Geometry of Reason computes it on
      the literal ``L_rw``, whose eigenvectors are not orthogonal);
    * ``smoothness`` = ``energy / tr(X^T X)``;
    * ``hfer`` = share of the power in the top ``high_fraction`` of frequencies
      (``ceil(high_fraction * T)`` largest eigenvalues, at least one);
    * ``signal_entropy`` = entropy of ``p / sum(p)``.

    Args:
        vals: ``(..., T)`` ascending eigenvalues.
        vecs: ``(..., T, T)`` eigenvectors (columns): orthonormal, or unit-norm for ``L_rw``.
        X: ``(..., T, D)`` signals; broadcast against the leading dimensions.
        L: ``(..., T, T)`` the Laplacian itself, for the energy of a non-symmetric one.

    Returns:
        Each feature as a ``(...)`` tensor.
    """
    X = X.to(vecs.dtype)
    power = (vecs.transpose(-1, -2) @ X).square().sum(dim=-1)  # (..., T)
    total = power.sum(dim=-1)
    if L is None:
        energy = (vals * power).sum(dim=-1)
    else:
        energy = (X.transpose(-1, -2) @ L.to(X.dtype) @ X).diagonal(0, -2, -1).sum(dim=-1)
    T = vals.shape[-1]
    n_high = max(1, -(-int(round(high_fraction * T * 1e6)) // 1_000_000))  # ceil, robust to fp
    high = power[..., T - n_high :].sum(dim=-1)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    norm = X.square().sum(dim=(-2, -1))  # tr(X^T X); the power total only for orthonormal U
    return {
        "energy": energy,
        "smoothness": energy / torch.where(norm > 0, norm, torch.ones_like(norm)),
        "hfer": high / safe,
        "signal_entropy": entropy(power),
    }
