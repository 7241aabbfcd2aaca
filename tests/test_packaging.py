"""A plain (not editable) install runs an experiment from an empty folder: the configs ship
as package data, ``probes train`` is the entry point, overrides are key=value."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_a_built_wheel_trains_a_packaged_config_from_an_empty_folder(tmp_path):
    dist, target, work = tmp_path / "dist", tmp_path / "site", tmp_path / "empty"
    work.mkdir()
    # Built from a copy: setuptools writes build/ beside the sources, and a stale build/lib
    # in the checkout would leak old modules into later wheels.
    source = tmp_path / "source"
    skip = (".venv", ".git", "build", "results", "runs", "stores", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*skip))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("probes-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"probes/configs/tiny.yaml", "probes/configs/default.yaml"} <= set(names)
    # The dependencies come from this environment; the package itself only from the wheel.
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import probes; print(probes.__file__)"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    )
    assert where.stdout.startswith(str(target)), where.stdout  # not the source tree
    cmd = [str(target / "bin" / "probes"), "train", "--config", "tiny", "n_boot=20"]
    cmd += ["eval.cv=0", "eval.refit=false", "wandb.mode=disabled"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=work, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (work / "results" / "tiny" / "latest" / "metrics.json").is_file()
    assert (work / "runs" / "data" / "arith-perturb-tiny.jsonl").is_file()  # built here
