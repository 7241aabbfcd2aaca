"""The examples in the docstrings run with the suite (``--doctest-modules`` over probes/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_suite_collects_every_docstring_example():
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    items = [line for line in out.stdout.splitlines() if line.startswith("probes/")]
    examples = sum(
        text.count(">>> ")
        for path in (ROOT / "probes").rglob("*.py")
        for text in [path.read_text()]
        if ">>> " in text
    )
    assert examples >= 17 and len(items) >= 10, out.stdout[-2000:]
    for name in ("probes.spectral.causal_laplacian_lower", "probes.confounds.token_confounds"):
        assert any(name in item for item in items), name
