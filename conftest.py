"""Test environment for the suite and the doctests under probes/: nothing leaves the machine
and every cache lives in a temp dir."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Set before anything imports transformers, datasets or wandb.
_TMP = tempfile.mkdtemp(prefix="probes-tests-")
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
os.environ.update(
    {
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": os.path.join(_TMP, "hf"),
        "WANDB_DIR": os.path.join(_TMP, "wandb"),
        "PROBES_CACHE": os.path.join(_TMP, "probes-cache"),
        "TOKENIZERS_PARALLELISM": "false",
    }
)
