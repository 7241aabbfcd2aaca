"""The dependency floors in pyproject.toml match what the code calls, and the installed
versions satisfy them."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parents[1]

#: The oldest version of each package that has every API the code calls, and why.
NEEDED = {
    "torch": ("2.4", "torch.linalg, inference_mode in worker threads, torch.finfo on bf16"),
    "transformers": ("4.56", "from_pretrained(dtype=...)"),
    "wandb": ("0.19.10", 'wandb.init(reinit="finish_previous")'),
    "lightning": ("2.4", "BasePredictionWriter, strategy.barrier/reduce"),
    "scipy": ("1.11", "lapack.ssytrd/sormqr, eigh_tridiagonal(select='i')"),
}


def requirements() -> dict[str, Requirement]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in data["project"]["dependencies"]]
    return {r.name: r for r in reqs}


@pytest.mark.parametrize("name", sorted(NEEDED))
def test_each_floor_is_at_least_what_the_code_calls(name):
    req = requirements()[name]
    floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    need, why = NEEDED[name]
    assert floors and min(floors) >= Version(need), f"{name}: {why} needs >= {need}"


def test_the_installed_versions_satisfy_the_floors():
    for name, req in requirements().items():
        if name.startswith(("champ", "reasoning")):
            continue
        assert req.specifier.contains(version(name), prereleases=True), (name, version(name))
