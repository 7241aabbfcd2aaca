"""Run a calibration experiment: ``python train.py --config gsm-perturb [key=value ...]``.

The same as ``probes train`` (``probes train --help``): extracts (or reuses) the feature
store, fits every configured scorer, evaluates them with grouped bootstrap intervals, and
writes ``results/<name>/<timestamp>/`` (``results/<name>/latest`` points at the last
successful run) and a W&B run (offline by default).
"""

from __future__ import annotations

import sys

from probes.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]], prog="train.py"))
