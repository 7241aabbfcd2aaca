"""The certified mixed-precision solver for the ends of the spectrum (probes.eigen): exact
to the stated bound on constructed clustered spectra and on every graph of real texts, or
it falls back to the dense solver, never a wrong value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes import eigen
from probes.config import CaptureConfig
from probes.features import graph_features, resolve_families
from probes.threads import lapack_threads, torch_threads

ENDS = ("eig_low", "eig_high", "fiedler", "gap", "eigengap", "eig_mean", "eig_std")


def with_spectrum(lam: np.ndarray, seed: int) -> torch.Tensor:
    """A dense symmetric matrix ``Q diag(lam) Q^T`` with a random orthogonal ``Q``."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(len(lam), len(lam))))
    return torch.from_numpy((Q * lam) @ Q.T)


def spectra(T: int) -> dict[str, np.ndarray]:
    """Hard cases for the ends, eigenvalues in [0, 2] as for ``L_sym``."""
    rng = np.random.default_rng(T)
    bulk = np.sort(rng.uniform(0.3, 1.7, T))
    cases = {}
    lam = bulk.copy()
    lam[:12] = np.linspace(0, 1e-9, 12)  # 12 near-zero: more than the block of 7 holds
    cases["cluster_over_block_low"] = lam
    lam = bulk.copy()
    lam[:9] = [0, 1e-4, 1e-4 + 1e-12, 2e-4, 2e-4 + 3e-9, 3e-4, 3.000001e-4, 3.000002e-4, 0.01]
    cases["clustered_inside_and_at_edge"] = lam
    lam = bulk.copy()
    lam[-8:] = 1.9 + np.array([0, 1e-10, 2e-10, 3e-10, 4e-10, 5e-10, 6e-10, 7e-10])
    cases["cluster_over_block_high"] = lam
    lam = bulk.copy()
    lam[:4] = 0.0  # four components: a disconnected graph
    lam[-3:] = 2.0  # exact multiplicity at the top (bipartite components)
    cases["multiplicities"] = lam
    return {name: np.sort(v) for name, v in cases.items()}


@pytest.mark.parametrize("stage", ["lapack", "torch"])
@pytest.mark.parametrize("T", [200, 512])
def test_clustered_ends_are_exact_or_solved_densely(stage, T, monkeypatch):
    monkeypatch.setattr(eigen, "CPU_STAGE", stage)  # "torch" is the CUDA path, run on CPU
    names = list(spectra(T))
    lams = np.stack([spectra(T)[n] for n in names])
    L = torch.stack([with_spectrum(lam, i) for i, lam in enumerate(lams)])
    got = eigen.extreme_eigvals(L, 5, 4, "mixed")
    assert got.refined + got.fallbacks == len(names)
    for i, name in enumerate(names):
        low_err = np.abs(got.low[i].numpy() - lams[i, :5]).max()
        high_err = np.abs(got.high[i].numpy() - lams[i, -4:]).max()
        assert max(low_err, high_err) <= eigen.CERTIFIED, name


def test_vectors_that_cannot_be_certified_fall_back(monkeypatch):
    """Float32 vectors spoiled by 1e-3 leave residuals far above the certificate: every
    graph is solved again densely, and the values are the dense ones."""
    real = eigen._float32_pairs

    def spoiled(L, idx):
        mu, V, ok = real(L, idx)
        noise = torch.randn(V.shape, generator=torch.Generator().manual_seed(0))
        return mu, V + 1e-3 * noise.to(V.dtype), ok

    monkeypatch.setattr(eigen, "_float32_pairs", spoiled)
    lam = np.sort(np.random.default_rng(1).uniform(0, 2, 300))
    L = torch.stack([with_spectrum(lam, s) for s in range(3)])
    got = eigen.extreme_eigvals(L, 5, 4, "mixed")
    assert (got.refined, got.fallbacks) == (0, 3)
    np.testing.assert_allclose(got.low.numpy(), np.tile(lam[:5], (3, 1)), atol=1e-12)
    np.testing.assert_allclose(got.high.numpy(), np.tile(lam[-4:], (3, 1)), atol=1e-12)


def test_auto_takes_mixed_only_where_it_was_measured_faster():
    cpu = torch.device("cpu")
    lo, hi = eigen.MIXED_RANGE["cpu"]
    assert [eigen.resolve_method("auto", T, cpu) for T in (lo - 1, lo, hi, hi + 1)] == [
        "dense",
        "mixed",
        "mixed",
        "dense",
    ]
    assert eigen.resolve_method("auto", 1024, torch.device("cuda")) == "dense"  # not measured
    assert eigen.resolve_method("mixed", 64, cpu) == "mixed"
    with pytest.raises(ValueError, match="unknown eigenvalue method 'lanczos'"):
        eigen.resolve_method("lanczos", 64, cpu)


def dense_spectrum(W: np.ndarray, kind: str) -> np.ndarray:
    """Ascending float64 eigenvalues of ``D - W`` or ``L_sym`` (NumPy's LAPACK, not torch's)."""
    d = W.sum(axis=1)
    if kind == "combinatorial":
        L = np.diag(d) - W
    else:  # sym, and rw through it (L_rw is similar to L_sym)
        s = 1 / np.sqrt(d)
        L = np.eye(len(d)) - s[:, None] * W * s[None, :]
    return np.clip(np.linalg.eigvalsh(L), 0, None)


def reference_ends(a: np.ndarray, kind: str, k: int) -> dict[str, list[float]]:
    """The ends families of one graph from a dense float64 solve of its Laplacian."""
    W = (a + a.T) / 2
    lam = dense_spectrum(W, kind)
    sym = lam if kind != "combinatorial" else dense_spectrum(W, "sym")
    T = len(lam)
    return {
        "eig_low": [lam[min(i, T - 1)] for i in range(1, k + 1)],
        "eig_high": [lam[max(T - 1 - i, 0)] for i in range(k)],
        "fiedler": [sym[1]],
        "gap": [lam[1] - lam[0]],
        "eigengap": [np.diff(lam[: k + 1]).max()],
        "eig_mean": [lam.mean()],
        "eig_std": [lam.std()],
    }


@pytest.mark.integration
def test_every_graph_of_twenty_real_texts_is_within_the_bound(tmp_path_factory, monkeypatch):
    """20 CHAMP texts of 64-1,024 tokens through the embedded model; every layer's head-mean
    graph under the three Laplacians and every head's graph (of every third layer, in
    rotation) under ``sym`` and ``combinatorial`` (``rw`` is solved through ``L_sym``, the
    same matrix): the mixed solver's features against a dense float64 NumPy solve, within
    ``eigen.ACCURACY``."""
    from probes.data import BUILDERS
    from probes.models import load_frozen

    monkeypatch.setenv("PROBES_CACHE", str(tmp_path_factory.mktemp("cache")))
    lm = load_frozen("smollm2-135m")
    records = BUILDERS["champ"](seed=0)
    tokens = sorted(
        (lm.tokenizer(r.full_text, add_special_tokens=False)["input_ids"] for r in records),
        key=len,
    )
    lengths = np.unique(np.geomspace(64, 1024, 20).round().astype(int))
    assert len(lengths) == 20
    texts = []
    for n in lengths:  # a different record for each length, cut to it
        ids = next(t for t in tokens if len(t) >= n)
        tokens.remove(ids)
        texts.append(ids[:n])
    counts: dict[str, int] = {}
    # One thread each, as the capture's solver workers: torch's OpenMP threads and OpenBLAS's
    # (NumPy's reference) spin against each other on two cores and slowed this test 5x.
    with torch_threads(1), lapack_threads(1):
        worst = _check_texts(lm, texts, counts)
    assert worst <= eigen.ACCURACY, worst
    assert counts["refined"] > 0.9 * (counts["refined"] + counts["fallbacks"])  # fast path
    print(f"worst {worst:.2e}, counts {counts}")


def _check_texts(lm, texts: list[list[int]], counts: dict) -> float:
    """The largest difference between the mixed solver's features and the reference."""
    worst = 0.0
    for t, ids in enumerate(texts):
        with torch.inference_mode():
            out = lm.model(input_ids=torch.tensor([ids]), output_attentions=True, use_cache=False)
        for layer, attn in enumerate(out.attentions):  # (1, H, T, T) per layer
            A = attn[0].double()
            # Every head-mean graph; the per-head graphs of every third layer, rotating
            # with the text, so that each layer's heads are checked at about 7 lengths
            # (the dense references of every head cost 3x the suite's time for this test).
            per_head = (("each", ("sym", "combinatorial")),) if layer % 3 == t % 3 else ()
            for heads, kinds in (("mean", ("sym", "rw", "combinatorial")), *per_head):
                graphs = A.mean(dim=0, keepdim=True) if heads == "mean" else A
                for kind in kinds:
                    # fiedler is always L_sym's: the sym run covers it
                    fams = (
                        ENDS
                        if kind != "combinatorial"
                        else tuple(f for f in ENDS if f != "fiedler")
                    )
                    cfg = CaptureConfig(
                        families=fams, heads=heads, laplacian=kind, eig_method="mixed"
                    )
                    fams = resolve_families(cfg)
                    got = graph_features(graphs, None, fams, cfg, counts).numpy()
                    refs = [reference_ends(g.numpy(), kind, cfg.k) for g in graphs]
                    want = np.concatenate([np.ravel([r[f.name] for r in refs]) for f in fams])
                    worst = max(worst, float(np.abs(got - want).max()))
    return worst


def test_non_causal_attention_is_refused_not_misread():
    """The Laplacian is built from the lower triangle only, which is all of a causal graph;
    attention with weight above the diagonal would be silently misread, so it is refused."""
    from probes.spectral import causal_laplacian_lower

    A = torch.full((1, 4, 4), 0.25, dtype=torch.float64)  # bidirectional
    with pytest.raises(ValueError, match="above the diagonal: not a causal graph"):
        causal_laplacian_lower(A, "sym")
