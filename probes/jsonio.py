"""Strict JSON: every file we write parses with any JSON reader.

Python's ``json`` writes NaN and infinity as bare ``NaN`` / ``Infinity``, which is not JSON.
Here a non-finite number becomes ``null`` and, inside an object, a ``<key>_reason`` entry
beside it says why (the producer's reason when it gave one, else ``"not a number"``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_text


def strict(value: Any, reason: str = "not a number") -> Any:
    """``value`` with non-finite floats replaced by ``None`` and numpy scalars made plain.

    Example:
        >>> strict({"auroc": float("nan"), "n": 3})
        {'auroc': None, 'auroc_reason': 'not a number', 'n': 3}
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            plain = strict(v, reason)
            out[k] = plain
            if plain is None and _is_nonfinite(v) and f"{k}_reason" not in value:
                out[f"{k}_reason"] = reason if _is_nan(v) else f"{v} is not a finite number"
        return out
    if isinstance(value, list | tuple):
        return [strict(v, reason) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """JSON text of ``strict(value)``; refuses anything that is still not JSON."""
    return json.dumps(strict(value), allow_nan=False, **kwargs)


def write_json(path: str | Path, value: Any, indent: int | None = 1) -> Path:
    """Write ``value`` as strict JSON, atomically."""
    return atomic_write_text(path, dumps(value, indent=indent))


def _is_nonfinite(v: Any) -> bool:
    return isinstance(v, float | np.floating) and not math.isfinite(float(v))


def _is_nan(v: Any) -> bool:
    return isinstance(v, float | np.floating) and math.isnan(float(v))
