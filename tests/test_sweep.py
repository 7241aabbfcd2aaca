"""configs/sweep.yaml: every command line a W&B agent makes of it parses, validates and sets
the swept options; one of them runs (offline, on the tiny config)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import yaml

from probes.cli import main

ROOT = Path(__file__).parents[1]


def agent_commands(sweep: dict) -> list[tuple[dict, list[str]]]:
    """What ``wandb agent`` runs for each point of a grid sweep: the parameters as W&B's
    agent formats them (``create_sweep_command_args``) put into the sweep's ``command``
    the way the agent does (each ``${macro}`` chunk replaced by its list)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    params = sweep["parameters"]
    names = list(params)
    grids = [p["values"] if "values" in p else [p["value"]] for p in params.values()]
    out = []
    for point in itertools.product(*grids):
        args = {n: {"value": v} for n, v in zip(names, point, strict=True)}
        macros = create_sweep_command_args({"args": args}) | {"program": [sweep["program"]]}
        command = []
        for chunk in sweep["command"]:
            chunk = str(chunk)
            if chunk.startswith("${") and chunk.endswith("}"):
                command += macros.get(chunk[2:-1]) or []
            else:
                command.append(chunk)
        out.append((dict(zip(names, point, strict=True)), command))
    return out


def test_every_sweep_command_sets_its_options(capsys):
    sweep = yaml.safe_load((ROOT / "configs" / "sweep.yaml").read_text())
    commands = agent_commands(sweep)
    assert len(commands) == 2 * 2 * 3
    for point, command in commands:
        assert command[:2] == ["probes", "train"]
        assert main([*command[1:], "--print-config"]) == 0
        resolved = yaml.safe_load(capsys.readouterr().out)
        for key, value in point.items():
            section, option = key.split(".")
            assert resolved[section][option] == value, (key, resolved[section][option])
        assert resolved["name"] == "gsm-perturb"


def test_a_sweep_command_runs(tmp_path):
    sweep = yaml.safe_load((ROOT / "configs" / "sweep.yaml").read_text())
    point, command = next((p, c) for p, c in agent_commands(sweep) if p["capture.layers"] == "all")
    # The tiny config instead of gsm-perturb (the same options exist), kept short.
    command = [c if c != "gsm-perturb" else "tiny" for c in command]
    command += ["n_boot=20", "eval.cv=0", "eval.refit=false"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    out = subprocess.run(
        [sys.executable, "-m", "probes.cli", *command[1:]],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    resolved = yaml.safe_load(
        next((tmp_path / "results" / "tiny").glob("2*/config.yaml")).read_text()
    )
    assert resolved["capture"]["heads"] == point["capture.heads"]
    assert resolved["capture"]["laplacian"] == point["capture.laplacian"]
