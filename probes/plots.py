"""PNG plots of an experiment. Plotting lives apart from computing: every function takes
finished numbers and a path.

Figures are made with matplotlib's object API (``Figure``), never through ``pyplot``: no
backend is chosen or switched (a notebook keeps its own), no figure is left open, and it
works without a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve


def _subplots(rows: int = 1, cols: int = 1, figsize=(5.5, 5), squeeze: bool = True):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=squeeze)


def roc_curves(
    y: np.ndarray,
    probs: Mapping[str, np.ndarray],
    aurocs: Mapping[str, float],
    path: Path,
    on: str = "test",
) -> Path:
    """Every scorer's ROC curve on one figure; ``on`` names the evaluated records."""
    fig, ax = _subplots(figsize=(5.5, 5))
    for name, p in probs.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} ({aurocs[name]:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC on {on} (AUROC)")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def reliability(
    y: np.ndarray, probs: Mapping[str, np.ndarray], path: Path, n_bins: int = 15, on: str = ""
) -> Path:
    """Reliability diagrams: mean predicted P(valid) against the observed rate, per bin;
    ``on`` names the evaluated records in the figure's title."""
    names = list(probs)
    cols = min(3, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = _subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        acc, conf = calibration_curve(y, probs[name], n_bins=n_bins)  # non-empty bins
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.plot(conf, acc, marker="o")
        ax.set(
            title=name,
            xlabel="predicted P(valid)",
            ylabel="observed valid rate",
            xlim=(0, 1),
            ylim=(0, 1),
        )
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if on:
        fig.suptitle(f"reliability on {on}")
    return _save(fig, path)


def auroc_heatmap(rows: Sequence[Mapping], path: Path) -> Path:
    """Test AUROC per (family, layer) from :func:`probes.analysis.layer_auroc` rows."""
    # Spectral families only: the hidden-state probe's units are not a layer profile.
    rows = [r for r in rows if r["layer"] != "-" and r["family"] != "hidden_mean"]
    families = sorted({r["family"] for r in rows})
    layers = sorted({r["layer"] for r in rows})
    grid = np.full((len(families), len(layers)), np.nan)
    for r in rows:
        grid[families.index(r["family"]), layers.index(r["layer"])] = r["test_auroc"]
    fig, ax = _subplots(figsize=(max(6, 0.3 * len(layers) + 2), 0.45 * len(families) + 1.5))
    im = ax.imshow(grid, cmap="RdBu_r", vmin=0.3, vmax=0.7, aspect="auto")
    ax.set_xticks(range(len(layers)), [layer[1:] for layer in layers], fontsize=7)
    ax.set_yticks(range(len(families)), families, fontsize=8)
    ax.set(xlabel="layer", title="test AUROC (feature and direction chosen on calib)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path)


def spectra_by_class(
    names: Sequence[str], X: np.ndarray, y: np.ndarray, layers: Sequence[str], path: Path
) -> Path:
    """Mean (+- std) of the stored eigenvalues (``eig_low`` then ``eig_high``) by class."""
    fig, axes = _subplots(1, len(layers), figsize=(4 * len(layers), 3.4), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        cols = [
            j
            for j, n in enumerate(names)
            if n.split("/")[0] in ("eig_low", "eig_high") and f"/{layer}" in n
        ]
        for label, name in ((1, "valid"), (0, "invalid")):
            v = X[y == label][:, cols]
            ax.errorbar(
                range(len(cols)), v.mean(0), yerr=v.std(0), marker="o", capsize=2, label=name
            )
        ax.set(title=f"{layer}: eig_low k.., eig_high k..", xlabel="eigenvalue", ylabel="value")
        ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
