"""Run a calibration experiment: ``python train.py --config configs/gsm-perturb.yaml``.

Extracts (or reuses) the feature store, fits every configured scorer, evaluates them on the
test split with grouped bootstrap intervals, and writes ``results/<name>/`` (metrics.json,
layer_auroc.csv, confound_audit.csv, plots, bundles, the resolved config) in a fresh run
folder ``results/<name>/<timestamp>/`` (``results/<name>/latest`` points at the last successful
one) and a W&B run (offline by default). ``--set section.key=value`` overrides any option
(values are read as YAML).
"""

from __future__ import annotations

import argparse
import sys

from probes.config import ConfigError, ExperimentConfig, from_dict, load_experiment
from probes.errors import report_errors


def apply_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """``["capture.heads=each", "n_boot=100"]`` applied to ``cfg``; bad keys are named."""
    import yaml

    raw = cfg.to_dict()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        *path, last = key.split(".")
        target = raw
        for part in path:
            if not isinstance(target, dict) or not isinstance(target.get(part), dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
            target = target[part]
        target[last] = yaml.safe_load(value)
    return from_dict(ExperimentConfig, raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/gsm-perturb.yaml", help="experiment YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    def run() -> int:
        cfg = apply_overrides(load_experiment(args.config), args.overrides)
        from probes.experiment import run_experiment

        run_experiment(cfg)
        return 0

    return report_errors("train.py", run)


if __name__ == "__main__":
    sys.exit(main())
