"""Every spectral function against a dense NumPy/SciPy reference, plus hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from probes import spectral as sp
from tests.reference import laplacians, random_causal_attention, spectrum

SIZES = [2, 3, 7, 32, 101]


@pytest.mark.parametrize("T", SIZES)
@pytest.mark.parametrize("kind", ["combinatorial", "sym", "rw"])
def test_laplacian_eigvals_match_scipy(T, kind):
    rng = np.random.default_rng(T)
    A = random_causal_attention(rng, heads=3, T=T)
    W = sp.symmetrize(torch.from_numpy(A))
    got = sp.laplacian_eigvals(W, kind).numpy()  # batched over 3 heads
    want = np.stack([spectrum((a + a.T) / 2, kind) for a in A])
    np.testing.assert_allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("T", SIZES)
def test_laplacian_matrices_match_dense(T):
    A = random_causal_attention(np.random.default_rng(1), heads=2, T=T)
    W = sp.symmetrize(torch.from_numpy(A))
    for h in range(2):
        ref = laplacians(W[h].numpy())
        np.testing.assert_allclose(
            sp.combinatorial_laplacian(W)[h].numpy(), ref["combinatorial"], atol=1e-12
        )
        np.testing.assert_allclose(sp.normalized_laplacian(W)[h].numpy(), ref["sym"], atol=1e-12)
        np.testing.assert_allclose(sp.random_walk_laplacian(W)[h].numpy(), ref["rw"], atol=1e-12)


@pytest.mark.parametrize("T", SIZES)
def test_random_walk_spectrum_equals_sym_and_general_solver(T):
    A = random_causal_attention(np.random.default_rng(2), heads=1, T=T)[0]
    W = sp.symmetrize(torch.from_numpy(A))
    L_rw = sp.random_walk_laplacian(W)
    assert not torch.allclose(L_rw, L_rw.T)  # really non-symmetric
    general = torch.linalg.eigvals(L_rw)
    assert general.imag.abs().max() < 1e-10
    np.testing.assert_allclose(
        np.sort(general.real.numpy()), sp.laplacian_eigvals(W, "sym").numpy(), atol=1e-10
    )
    np.testing.assert_allclose(sp.laplacian_eigvals(W, "rw"), sp.laplacian_eigvals(W, "sym"))


@pytest.mark.parametrize("T", SIZES)
def test_causal_laplacian_eigvals_are_its_diagonal(T):
    A = torch.from_numpy(random_causal_attention(np.random.default_rng(3), heads=2, T=T))
    L = sp.causal_laplacian(A)
    assert torch.equal(L, L.tril())  # lower-triangular
    full = torch.linalg.eigvals(L)  # general solver on the full matrix
    assert full.imag.abs().max() < 1e-12
    want = np.sort(full.real.numpy(), axis=-1)
    got = np.sort(sp.causal_laplacian_eigvals(A).numpy(), axis=-1)
    np.testing.assert_allclose(got, want, atol=1e-12)
    # D_in by its definition, with a loop: mean attention that key j receives.
    a = A[0].numpy()
    d_in = [a[j:, j].sum() / (T - j) for j in range(T)]
    np.testing.assert_allclose(sp.causal_in_degrees(A)[0].numpy(), d_in, atol=1e-14)


def test_attention_logdet_is_logdet_over_T():
    A = torch.from_numpy(random_causal_attention(np.random.default_rng(4), heads=2, T=9))
    sign, logabs = np.linalg.slogdet(A.numpy())
    assert (sign == 1).all()
    np.testing.assert_allclose(sp.attention_logdet(A).numpy(), logabs / 9, atol=1e-12)


ARTICLE_A = torch.tensor([[0.1, 0.7, 0.2], [0.3, 0.4, 0.3], [0.5, 0.2, 0.3]], dtype=torch.float64)


def test_article_example_by_hand():
    """The article's 3x3 matrix, worked by hand.

    The article forms L = D - A with D = diag(row sums) = I and calls eigh on it. L is not
    symmetric: trace(A) = 0.8 and det(A) = 0.02 give A's eigenvalues 1 and -0.1 +- 0.1i, so
    the true spectrum of L = I - A is {0, 1.1 -+ 0.1i}, complex. eigh reads only the lower
    triangle and returns the real spectrum of another matrix.

    Done correctly (undirected W = (A + A^T)/2, degrees 0.95, 1.15, 0.9): L = D - W has
    eigenvalue 0, trace 2.2 and every 2x2 principal minor 0.3875, so the others solve
    x^2 - 2.2x + 1.1625 = 0: x = 1.1 +- sqrt(0.0475).
    """
    L_article = torch.eye(3, dtype=torch.float64) - ARTICLE_A
    true = torch.linalg.eigvals(L_article)
    true = true[true.real.argsort()]
    np.testing.assert_allclose(true.real.numpy(), [0.0, 1.1, 1.1], atol=1e-12)
    np.testing.assert_allclose(np.abs(true.imag.numpy()), [0.0, 0.1, 0.1], atol=1e-12)

    wrong = torch.linalg.eigvalsh(L_article)  # the article's bug
    lower = L_article.tril() + L_article.tril(-1).T
    np.testing.assert_allclose(wrong, torch.linalg.eigvalsh(lower), atol=1e-12)
    assert not np.allclose(np.sort(wrong.numpy()), [0.0, 1.1, 1.1], atol=1e-3)

    W = sp.symmetrize(ARTICLE_A)
    np.testing.assert_allclose(sp.degrees(W).numpy(), [0.95, 1.15, 0.9], atol=1e-12)
    r = np.sqrt(0.0475)
    np.testing.assert_allclose(
        sp.laplacian_eigvals(W, "combinatorial").numpy(), [0.0, 1.1 - r, 1.1 + r], atol=1e-12
    )


def test_negative_eigenvalue_raises_and_rounding_clamps():
    assert torch.equal(sp.clamp_spectrum(torch.tensor([-1e-9, 0.5])), torch.tensor([0.0, 0.5]))
    with pytest.raises(sp.NegativeEigenvalueError) as err:
        sp.clamp_spectrum(torch.tensor([[0.0, 1.0], [-0.5, 1.0]]))
    assert err.value.index == (1,)
    # A negative edge weight makes an indefinite "Laplacian": caught, not clamped.
    W = torch.tensor([[0.0, -1.0], [-1.0, 0.0]], dtype=torch.float64)
    with pytest.raises(sp.NegativeEigenvalueError):
        sp.laplacian_eigvals(W, "combinatorial")


def test_float32_rounding_is_clamped_float64_keeps_its_bound():
    # float32 eigensolves round at ~1e-6 on long texts (seen: -1.07e-6 at T = 512): clamped;
    # in float64 the same value is far beyond rounding and raises, naming the bound.
    vals = [-2e-6, 0.5, 2.0]
    got = sp.clamp_spectrum(torch.tensor(vals, dtype=torch.float32))
    assert got.tolist() == [0.0, 0.5, 2.0]
    with pytest.raises(sp.NegativeEigenvalueError, match="< -1e-06"):
        sp.clamp_spectrum(torch.tensor(vals, dtype=torch.float64))
    with pytest.raises(sp.NegativeEigenvalueError):
        sp.clamp_spectrum(torch.tensor([-1e-3, 0.5, 2.0], dtype=torch.float32))
    # A long random graph in float32 against float64 (and no false alarm).
    A = torch.from_numpy(random_causal_attention(np.random.default_rng(9), heads=1, T=400))[0]
    W = sp.symmetrize(A)
    e32 = sp.laplacian_eigvals(W, "sym", torch.float32).double()
    e64 = sp.laplacian_eigvals(W, "sym", torch.float64)
    np.testing.assert_allclose(e32.numpy(), e64.numpy(), atol=5e-5)


def test_inputs_never_modified():
    A = torch.from_numpy(random_causal_attention(np.random.default_rng(5), heads=2, T=6))
    before = A.clone()
    W = sp.symmetrize(A)
    Wb = W.clone()
    for kind in ("combinatorial", "sym", "rw"):
        sp.laplacian_eigvals(W, kind)
        sp.laplacian_eigh(W, kind)
    sp.causal_laplacian_eigvals(A)
    sp.attention_logdet(A)
    assert torch.equal(A, before) and torch.equal(W, Wb)


def test_graph_signal_features_match_definitions():
    rng = np.random.default_rng(6)
    A = random_causal_attention(rng, heads=1, T=20)[0]
    X = rng.normal(size=(20, 5))
    W = (A + A.T) / 2
    L = laplacians(W)["sym"]
    vals, vecs = sp.laplacian_eigh(torch.from_numpy(W), "sym")
    got = sp.graph_signal_features(vals, vecs, torch.from_numpy(X))
    energy = np.trace(X.T @ L @ X)
    np.testing.assert_allclose(float(got["energy"]), energy, rtol=1e-10)
    np.testing.assert_allclose(float(got["smoothness"]), energy / (X**2).sum(), rtol=1e-10)
    U = scipy.linalg.eigh(L)[1]
    power = ((U.T @ X) ** 2).sum(axis=1)
    np.testing.assert_allclose(float(got["hfer"]), power[-2:].sum() / power.sum(), rtol=1e-8)


def test_small_helpers_by_hand():
    vals = torch.tensor([0.0, 0.2, 0.9, 1.0, 1.5], dtype=torch.float64)
    assert float(sp.fiedler_value(vals)) == pytest.approx(0.2)
    assert float(sp.spectral_gap(vals)) == pytest.approx(0.2)
    assert float(sp.max_eigengap(vals, k=2)) == pytest.approx(0.7)  # among 0, .2, .9
    assert float(sp.max_eigengap(vals, k=4)) == pytest.approx(0.7)
    p = vals / vals.sum()
    want = -sum(float(x) * np.log(float(x)) for x in p if x > 0)
    assert float(sp.eigenvalue_entropy(vals)) == pytest.approx(want)
    assert float(sp.fiedler_value(torch.tensor([0.0]))) == 0.0


def test_isolated_nodes_follow_chungs_convention():
    """networkx's normalized Laplacian (Chung) gives an isolated node a zero row: eigenvalue 0,
    so the graph's Fiedler value is 0, as for any disconnected graph."""
    import networkx as nx

    rng = np.random.default_rng(3)
    W = rng.random((6, 6))
    W = (W + W.T) / 2
    W[2, :] = W[:, 2] = 0  # node 2 isolated
    want = nx.normalized_laplacian_matrix(nx.from_numpy_array(W), weight="weight").toarray()
    got = sp.normalized_laplacian(torch.tensor(W)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
    vals = sp.laplacian_eigvals(torch.tensor(W), "sym")
    assert float(sp.fiedler_value(vals)) == pytest.approx(0, abs=1e-12)


# Worked by hand from the LapEigvals authors' definition (laplacian_diagonal_from_attn):
# 3 tokens, 3 layers. Column sums: A0 (1.7, 0.8, 0.5), A1 (1.5, 0.7, 0.8), A2 (1.3, 1.0, 0.7).
_A = [
    torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]], dtype=torch.float64),
    torch.tensor([[1.0, 0, 0], [0.4, 0.6, 0], [0.1, 0.1, 0.8]], dtype=torch.float64),
    torch.tensor([[1.0, 0, 0], [0.2, 0.8, 0], [0.1, 0.2, 0.7]], dtype=torch.float64),
]


@pytest.mark.parametrize(
    "layer, n_layers, want",
    [
        # first: (colsum + next diag) / (T - j + 1) - diag
        #   j=0: (1.7 + 1) / 4 - 1 = -0.325; j=1: (0.8 + 0.6) / 3 - 0.5; j=2: (0.5 + 0.8) / 2 - 0.5
        (0, 3, [-0.325, 1.4 / 3 - 0.5, 0.15]),
        # middle: (colsum - diag + next diag) / (T - j)
        #   j=0: (1.5 - 1 + 1) / 3 = 0.5; j=1: (0.7 - 0.6 + 0.8) / 2; j=2: (0.8 - 0.8 + 0.7) / 1
        (1, 3, [0.5, 0.45, 0.7]),
        # last: (colsum - diag) / (T - j - 1), 0 for the last token
        #   j=0: (1.3 - 1) / 2 = 0.15; j=1: (1.0 - 0.8) / 1 = 0.2
        (2, 3, [0.15, 0.2, 0.0]),
        # two layers: layer 1 is the last
        (1, 2, [0.25, 0.1, 0.0]),
    ],
)
def test_lapeigvals_cross_layer_diagonal_by_hand(layer, n_layers, want):
    a = _A[layer]
    nxt = _A[layer + 1].diagonal() if layer + 1 < n_layers else None
    got = sp.lapeigvals_diagonal(
        a.diagonal(), a.sum(dim=0), nxt, first=layer == 0, last=layer == n_layers - 1
    )
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)


def test_llm_check_score_sums_heads_of_mean_log_diagonals():
    diags = torch.tensor([[1.0, 0.5, 0.25], [0.5, 0.5, 0.5]], dtype=torch.float64)  # (H, T)
    want = (np.log(1) + np.log(0.5) + np.log(0.25)) / 3 + np.log(0.5)
    assert float(sp.llm_check_score(diags)) == pytest.approx(want, abs=1e-12)


def test_geometry_of_reason_signal_features_on_the_literal_random_walk_laplacian():
    """By hand: the path 0 - 1 - 2 (degrees 1, 2, 1), signal e_0. L_rw = I - D^-1 W has
    eigenvalues 0, 1, 2 with unit eigenvectors (1, 1, 1)/sqrt3, (1, 0, -1)/sqrt2 and
    (1, -1, 1)/sqrt3 (not orthogonal to each other in general; here the powers of e_0 are
    1/3, 1/2, 1/3). Energy x^T L_rw x = L_rw[0, 0] = 1 = smoothness; HFER (the top mode of 3)
    = (1/3) / (7/6) = 2/7; entropy of (2/7, 3/7, 2/7)."""
    W = torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=torch.float64)
    X = torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64)
    vals, U = sp.laplacian_eigh(W, "sym")
    V = sp.random_walk_vectors(U, W)
    got = sp.graph_signal_features(vals, V, X, 0.1, L=sp.random_walk_laplacian(W))
    np.testing.assert_allclose(vals.numpy(), [0, 1, 2], atol=1e-12)
    assert float(got["energy"]) == pytest.approx(1.0)
    assert float(got["smoothness"]) == pytest.approx(1.0)
    assert float(got["hfer"]) == pytest.approx(2 / 7)
    p = np.array([2, 3, 2]) / 7
    assert float(got["signal_entropy"]) == pytest.approx(-(p * np.log(p)).sum())
