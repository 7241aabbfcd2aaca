"""Compare saved scorer bundles on a feature store split or on new data.

    python evaluate.py --bundles results/gsm-perturb/latest/bundles/* --store stores/<...>
    python evaluate.py --bundles results/gsm-perturb/latest/bundles/* --data other.jsonl

The same as ``probes evaluate`` (``probes evaluate --help``; :mod:`probes.evaluation`).
"""

from __future__ import annotations

import sys

from probes.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]], prog="evaluate.py"))
