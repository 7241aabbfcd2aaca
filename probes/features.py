"""Feature families: each turns one layer's attention graph into a few numbers.

A family follows one small protocol (``name``, ``width``, ``compute``) and is found in the
``FAMILIES`` registry by name. All families of one layer share a :class:`LayerGraph`, which
computes each eigendecomposition once, lazily, for whichever families ask for it.

Feature names are the contract between extraction, calibrators and exported scorers:
``family/Lxx[/Hyy][/kz]``, e.g. ``fiedler/L12``, ``lapeig/L03/H05/k2``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from . import spectral as sp
from .config import CaptureConfig, ConfigError
from .eigen import extreme_eigvals


class _cached:
    """``functools.cached_property`` without its lock.

    Up to Python 3.11 that lock is shared by every instance of the class, so two solver
    threads working on different layers ran their eigensolves one after the other.
    """

    def __init__(self, fn: Callable):
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = self.fn(obj)
        obj.__dict__[self.name] = value  # found before this (non-data) descriptor from now on
        return value


class LayerGraph:
    """One layer of one text, seen as ``G`` graphs (``G = 1`` for ``heads: mean``, else ``H``).

    Each quantity is computed once, lazily, and only as far as the selected families need:
    the ends of the spectrum (``low``, ``high``) by :func:`probes.eigen.extreme_eigvals`, the
    whole spectrum (``eigvals``) only for a family that reads it, and the mean and spread of
    the eigenvalues from traces.

    Args:
        attn: ``(G, T, T)`` attention over the analysed span (any float dtype).
        hidden: ``(T, D)`` the layer's output hidden states over the span, or ``None``.
        cfg: the capture config (Laplacian kind, ``k``, precision, eigenvalue method).
        families: the graph families that will read it (they set what is solved).
    """

    def __init__(
        self, attn: Tensor, hidden: Tensor | None, cfg: CaptureConfig, families: Sequence[Family]
    ):
        self.cfg = cfg
        self.families = list(families)
        self.dtype = getattr(torch, cfg.eig_dtype)
        self.attn = attn.to(self.dtype)  # (G, T, T)
        self.hidden = hidden  # (T, D)
        self._vectors = any(f.needs_vectors for f in families)  # eigh once, not twice
        self._full = any(f.spectrum == "full" for f in families)
        self.n_low = max([f.low(cfg) for f in families] + [0])
        self.n_high = max([f.high(cfg) for f in families] + [0])
        self.refined = self.fallbacks = 0  # graphs solved by certified refinement / densely

    @_cached
    def W(self) -> Tensor:
        return sp.symmetrize(self.attn)  # (G, T, T)

    @_cached
    def L(self) -> Tensor:
        """``(G, T, T)`` the lower triangle (zero above) of the symmetric matrix with the
        configured Laplacian's spectrum: all that the symmetric eigensolvers read."""
        return sp.causal_laplacian_lower(self.attn, self.cfg.laplacian)

    @_cached
    def eigh(self) -> tuple[Tensor, Tensor]:
        vals, vecs = torch.linalg.eigh(self.L)
        return sp.clamp_spectrum(vals), vecs  # (G, T), (G, T, T)

    @_cached
    def eigvals(self) -> Tensor:
        """``(G, T)`` every eigenvalue of the configured Laplacian, ascending."""
        if self._vectors:
            return self.eigh[0]
        return sp.clamp_spectrum(torch.linalg.eigvalsh(self.L))

    @_cached
    def _ends(self) -> tuple[Tensor, Tensor]:
        T = self.L.shape[-1]
        n_low, n_high = min(self.n_low, T), min(self.n_high, T)
        if self._full or self._vectors:  # the whole spectrum is solved anyway
            vals = self.eigvals
            return vals[..., :n_low], vals[..., T - n_high :]
        return self._solve_ends(self.L, n_low, n_high)

    def _solve_ends(self, L: Tensor, n_low: int, n_high: int) -> tuple[Tensor, Tensor]:
        method = self.cfg.eig_method if self.dtype == torch.float64 else "dense"
        ends = extreme_eigvals(L, n_low, n_high, method)
        self.refined += ends.refined
        self.fallbacks += ends.fallbacks
        both = sp.clamp_spectrum(torch.cat([ends.low, ends.high], dim=-1))
        return both[..., :n_low], both[..., n_low:]

    @property
    def low(self) -> Tensor:
        """``(G, min(n_low, T))`` the smallest eigenvalues, ascending."""
        return self._ends[0]

    @property
    def high(self) -> Tensor:
        """``(G, min(n_high, T))`` the largest eigenvalues, ascending."""
        return self._ends[1]

    @_cached
    def sym_low(self) -> Tensor:
        """``(G, <= 2)`` the two smallest eigenvalues of ``L_sym`` (the Fiedler value's)."""
        if self.cfg.laplacian in ("sym", "rw"):
            return self.low[..., :2]
        L = sp.causal_laplacian_lower(self.attn, "sym")
        if self._full or self._vectors:
            return sp.clamp_spectrum(torch.linalg.eigvalsh(L))[..., :2]
        return self._solve_ends(L, 2, 0)[0]

    @_cached
    def moments(self) -> tuple[Tensor, Tensor]:
        """``(G,)`` mean and standard deviation of the eigenvalues, from traces:
        ``tr(L) / T`` and ``sqrt(||L||_F^2 / T - mean^2)`` (``L`` symmetric), O(T^2)."""
        T = self.L.shape[-1]
        diag = self.L.diagonal(dim1=-2, dim2=-1)
        mean = diag.sum(dim=-1) / T
        # L holds the lower triangle only: each off-diagonal entry stands for two.
        fro2 = 2 * self.L.square().sum(dim=(-2, -1)) - diag.square().sum(dim=-1)
        var = fro2 / T - mean.square()
        return mean, var.clamp_min(0).sqrt()

    @_cached
    def signal(self) -> dict[str, Tensor]:
        """Graph-signal features. Under ``rw`` on the literal ``L_rw`` (Geometry of Reason's
        default): its energy and its unit-norm, non-orthogonal eigenvectors."""
        if self.hidden is None:
            raise ValueError("graph-signal features need the layer's hidden states")
        frac = self.cfg.hfer_fraction
        vals, vecs = self.eigh  # of L_sym under rw: same eigenvalues
        if self.cfg.laplacian == "rw":
            V = sp.random_walk_vectors(vecs, self.W)
            L = sp.random_walk_laplacian(self.W)
            return sp.graph_signal_features(vals, V, self.hidden, frac, L=L)
        return sp.graph_signal_features(vals, vecs, self.hidden, frac)


@dataclass
class HeadDiagonals:
    """One layer of one text, per head, for the diagonal families.

    Attributes:
        diag: ``(H, T)`` ``A_h[j, j]`` over the analysed span.
        colsum: ``(H, T)`` ``sum_i A_h[i, j]`` over the span (the diagonal included).
        next_diag: ``(H, T)`` the next layer's diagonal; ``None`` for the model's last layer.
        first, last: the layer is the model's first / last.
        cfg: the capture config.
    """

    diag: Tensor
    colsum: Tensor
    next_diag: Tensor | None
    first: bool
    last: bool
    cfg: CaptureConfig


@dataclass(frozen=True)
class Family:
    """A feature family: ``compute(graph)`` returns ``(G, width(cfg))`` values.

    ``diagonal`` families compute from :class:`HeadDiagonals` instead of a
    :class:`LayerGraph`; ``per_head`` ones give one group per head under ``heads: mean`` too.
    ``low`` and ``high`` say how many eigenvalues the family reads at each end of the
    spectrum; ``spectrum="full"`` marks a family that needs every one (the slow path).
    """

    name: str
    compute: Callable[[LayerGraph], Tensor]
    doc: str
    width: Callable[[CaptureConfig], int] = lambda cfg: 1
    needs_vectors: bool = False
    needs_hidden: bool = False
    diagonal: bool = False
    per_head: bool = False
    needs_next_layer: bool = False
    low: Callable[[CaptureConfig], int] = lambda cfg: 0
    high: Callable[[CaptureConfig], int] = lambda cfg: 0
    spectrum: str = "none"

    def groups(self, cfg: CaptureConfig, n_heads: int) -> int:
        """Feature groups per layer: one per head, or one for the layer."""
        return n_heads if self.per_head or cfg.heads == "each" else 1


def _k(cfg: CaptureConfig) -> int:
    return cfg.k


def _col(x: Tensor) -> Tensor:
    return x.unsqueeze(-1)  # (G,) -> (G, 1)


def _eig_low(g: LayerGraph) -> Tensor:
    # Skip the trivial lambda_1 = 0 of a connected graph.
    return sp.pick(g.low, list(range(1, g.cfg.k + 1)))


def _eig_high(g: LayerGraph) -> Tensor:
    n = g.high.shape[-1]  # descending; a spectrum shorter than k repeats its smallest value
    return sp.pick(g.high, [n - 1 - i for i in range(g.cfg.k)])


def _k_plus_1(cfg: CaptureConfig) -> int:
    return cfg.k + 1


def _top_k(vals: Tensor, k: int) -> Tensor:
    return sp.pick(vals.sort(dim=-1, descending=True).values, list(range(k)))


def _lapeig_single(g: LayerGraph) -> Tensor:
    return _top_k(sp.causal_laplacian_eigvals(g.attn), g.cfg.k)


def _lapeig(d: HeadDiagonals) -> Tensor:
    vals = sp.lapeigvals_diagonal(d.diag, d.colsum, d.next_diag, d.first, d.last)  # (H, T)
    return _top_k(vals, d.cfg.k)


def _attn_logdet(d: HeadDiagonals) -> Tensor:
    if d.cfg.heads == "each":  # one head per group: its own mean log diagonal
        return _col(sp.llm_check_score(d.diag.unsqueeze(-2)))
    return sp.llm_check_score(d.diag).reshape(1, 1)


def _signal(name: str) -> Callable[[LayerGraph], Tensor]:
    return lambda g: _col(g.signal[name])


_FAMILY_LIST = [
    Family(
        "eig_low",
        _eig_low,
        "smallest k Laplacian eigenvalues after the trivial 0",
        _k,
        low=_k_plus_1,
        spectrum="ends",
    ),
    Family(
        "eig_high",
        _eig_high,
        "largest k Laplacian eigenvalues, descending",
        _k,
        high=_k,
        spectrum="ends",
    ),
    Family(
        "fiedler",
        lambda g: _col(sp.fiedler_value(g.sym_low)),
        "lambda_2 of L_sym",
        low=lambda cfg: 2 if cfg.laplacian in ("sym", "rw") else 0,
        spectrum="ends",
    ),
    Family(
        "gap",
        lambda g: _col(sp.spectral_gap(g.low)),
        "lambda_2 - lambda_1",
        low=lambda cfg: 2,
        spectrum="ends",
    ),
    Family(
        "eigengap",
        lambda g: _col(sp.max_eigengap(g.low, g.cfg.k)),
        "largest gap among the first k + 1 eigenvalues",
        low=_k_plus_1,
        spectrum="ends",
    ),
    Family(
        "eig_entropy",
        lambda g: _col(sp.eigenvalue_entropy(g.eigvals)),
        "entropy of lambda / sum(lambda) (needs the whole spectrum)",
        spectrum="full",
    ),
    Family("eig_mean", lambda g: _col(g.moments[0]), "mean eigenvalue, tr(L) / T"),
    Family(
        "eig_std",
        lambda g: _col(g.moments[1]),
        "eigenvalue std, sqrt(||L||_F^2 / T - mean^2)",
    ),
    Family(
        "lapeig_single",
        _lapeig_single,
        "top-k eigenvalues of the single-layer directed Laplacian D_in - A of the graph",
        _k,
    ),
    *[
        Family(name, _signal(name), doc, needs_vectors=True, needs_hidden=True, spectrum="full")
        for name, doc in [
            ("energy", "Dirichlet energy tr(X^T L X) of the hidden states"),
            ("smoothness", "energy / tr(X^T X)"),
            ("hfer", "share of hidden-state power in the top graph frequencies"),
            ("signal_entropy", "entropy of the hidden states' graph power spectrum"),
        ]
    ],
    Family(
        "attn_logdet",
        _attn_logdet,
        "LLM-Check: sum over heads of mean_j log A_h[j, j] (per head under heads: each)",
        diagonal=True,
    ),
    Family(
        "lapeig",
        _lapeig,
        "LapEigvals: top-k of the cross-layer Laplacian's diagonal, per head",
        _k,
        diagonal=True,
        per_head=True,
        needs_next_layer=True,
    ),
]

#: Every feature family, by name.
FAMILIES: dict[str, Family] = {f.name: f for f in _FAMILY_LIST}


def resolve_families(cfg: CaptureConfig) -> list[Family]:
    """The configured families, in registry order; unknown names raise naming the option."""
    if cfg.families == "all":
        return list(FAMILIES.values())
    if isinstance(cfg.families, str):
        raise ConfigError(f"option 'families': expected 'all' or a list, got {cfg.families!r}")
    unknown = [name for name in cfg.families if name not in FAMILIES]
    if unknown:
        raise ConfigError(
            f"option 'families': unknown {unknown}; known families: {', '.join(FAMILIES)}"
        )
    return [f for f in FAMILIES.values() if f.name in cfg.families]


def feature_names(
    families: Sequence[Family], layers: Sequence[int], n_heads: int, cfg: CaptureConfig
) -> list[str]:
    """Ordered names ``family/Lxx[/Hyy][/kz]`` matching the capture's columns.

    Order: layer, then family (graph families, then diagonal ones), then head, then k.
    """
    names = []
    ordered = [f for f in families if not f.diagonal] + [f for f in families if f.diagonal]
    for layer in layers:
        for fam in ordered:
            width = fam.width(cfg)
            n_groups = fam.groups(cfg, n_heads)
            for g in range(n_groups):
                head = f"/H{g:02d}" if n_groups > 1 or fam.per_head else ""
                for i in range(width):
                    kz = f"/k{i}" if width > 1 else ""
                    names.append(f"{fam.name}/L{layer:02d}{head}{kz}")
    return names


def reduce_heads(attn: Tensor, cfg: CaptureConfig) -> Tensor:
    """The graphs of one layer: ``(H, T, T) -> (G, T, T)`` in the solver's dtype, a new tensor.

    ``G = 1`` (the mean of the heads) under ``heads: mean``, else ``G = H``.
    """
    dtype = getattr(torch, cfg.eig_dtype)
    if cfg.heads != "mean":
        return attn.to(dtype, copy=True)
    # Head by head into one accumulator in the solver's precision: 3 ms at T = 512 where
    # mean(dtype=float64) took 8.4 ms (a strided converting copy), and no (H, T, T) copy.
    acc = attn[0].to(dtype, copy=True)
    for h in range(1, attn.shape[0]):
        acc.add_(attn[h])
    return acc.div_(attn.shape[0]).unsqueeze(0)  # (1, T, T)


def graph_features(
    graphs: Tensor,
    hidden: Tensor | None,
    families: Sequence[Family],
    cfg: CaptureConfig,
    counts: dict[str, int] | None = None,
) -> Tensor:
    """All features of one layer's graphs (from :func:`reduce_heads`), in name order.

    Args:
        graphs: ``(G, T, T)`` in the solver's dtype.
        hidden: ``(T, D)`` the layer's output hidden states over the span, or ``None``.
        counts: if given, ``refined`` and ``fallbacks`` are added to it: how many of the
            ``G`` graphs had their extreme eigenvalues certified by refinement, and how many
            fell back to the dense solver (both 0 where the dense solver was chosen or the
            whole spectrum was needed).

    Returns:
        ``(n_features_per_layer,)`` values in the eigensolver's dtype.
    """
    return _features(LayerGraph(graphs, hidden, cfg, _graph_families(families)), 1, counts)[0]


def stacked_graph_features(
    graphs: Tensor,
    families: Sequence[Family],
    cfg: CaptureConfig,
    counts: dict[str, int] | None = None,
) -> Tensor:
    """:func:`graph_features` of ``J`` layers (or texts) of the same size at once: one
    batched solve of all ``J * G`` graphs (how the capture solves on a GPU). Families that
    read hidden states are not stacked.

    Args:
        graphs: ``(J, G, T, T)`` in the solver's dtype.

    Returns:
        ``(J, n_features_per_layer)``, row ``j`` equal to ``graph_features(graphs[j])``.
    """
    J = graphs.shape[0]
    graph = LayerGraph(graphs.flatten(0, 1), None, cfg, _graph_families(families))
    return _features(graph, J, counts)


def _graph_families(families: Sequence[Family]) -> list[Family]:
    return [f for f in families if not f.diagonal]


def _features(graph: LayerGraph, J: int, counts: dict[str, int] | None) -> Tensor:
    # (J * G, width) per family -> per row j: family-major, then head, then k.
    features = torch.cat([fam.compute(graph).reshape(J, -1) for fam in graph.families], dim=1)
    if counts is not None:
        counts["refined"] = counts.get("refined", 0) + graph.refined
        counts["fallbacks"] = counts.get("fallbacks", 0) + graph.fallbacks
    return features


def diagonal_features(stats: HeadDiagonals, families: Sequence[Family]) -> Tensor:
    """The diagonal families' features of one layer of one text, in name order."""
    parts = [fam.compute(stats).reshape(-1) for fam in families if fam.diagonal]
    return torch.cat(parts) if parts else torch.empty(0, dtype=stats.diag.dtype)


def reduce_layer(
    attn: Tensor, hidden: Tensor | None, families: Sequence[Family], cfg: CaptureConfig
) -> Tensor:
    """The graph families' features of one layer of one text, in :func:`feature_names`
    order (diagonal families need the next layer too: :func:`diagonal_features`).

    Args:
        attn: ``(H, T, T)`` attention of every head over the analysed span.
        hidden: ``(T, D)`` the layer's output hidden states over the span, or ``None``.

    Returns:
        ``(n_features_per_layer,)`` values in the eigensolver's dtype.
    """
    return graph_features(reduce_heads(attn, cfg), hidden, families, cfg)
