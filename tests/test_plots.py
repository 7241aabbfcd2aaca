"""Plots: written without touching the user's matplotlib backend, and the reliability
diagram's bins are scikit-learn's calibration_curve."""

from __future__ import annotations

import subprocess
import sys

import numpy as np


def test_importing_and_plotting_keeps_the_backend(tmp_path):
    """A notebook user's backend (here: a named one set before the import) survives."""
    code = f"""
import matplotlib
matplotlib.use("svg")
import numpy as np
from probes import plots
y = np.array([0, 1, 0, 1, 1, 0])
p = np.array([0.1, 0.8, 0.3, 0.6, 0.9, 0.4])
plots.roc_curves(y, {{"a": p}}, {{"a": 0.9}}, {str(tmp_path / "roc.png")!r})
plots.reliability(y, {{"a": p}}, {str(tmp_path / "rel.png")!r})
import matplotlib.pyplot as plt
print(matplotlib.get_backend(), len(plt.get_fignums()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "0"]  # the backend kept, no figure left open
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_reliability_bins_are_calibration_curve(tmp_path, monkeypatch):
    from sklearn.calibration import calibration_curve

    from probes import plots

    seen = {}
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200)
    y = (rng.uniform(size=200) < p).astype(int)
    real_plot = plots.Figure.subplots

    def spy(fig, *a, **k):
        axes = real_plot(fig, *a, **k)
        ax = np.asarray(axes).flat[0]
        original = ax.plot

        def plot(*args, **kwargs):
            if kwargs.get("marker") == "o":
                seen["xy"] = (np.asarray(args[0]), np.asarray(args[1]))
            return original(*args, **kwargs)

        ax.plot = plot
        return axes

    monkeypatch.setattr(plots.Figure, "subplots", spy)
    plots.reliability(y, {"a": p}, tmp_path / "rel.png", n_bins=10)
    want_true, want_pred = calibration_curve(y, p, n_bins=10)
    np.testing.assert_allclose(seen["xy"][0], want_pred)
    np.testing.assert_allclose(seen["xy"][1], want_true)
