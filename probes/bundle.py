"""Scorer bundles: a fitted scorer as ``scorer.json`` + ``weights.safetensors``, no pickle.

Every scorer is stored in one form:

    P(valid) = sigmoid((w . (x - mean) / std + b) / temperature)     (F features, in order)

A logistic calibrator is exactly that (``b`` is its bias plus its prior shift); a threshold
baseline is its Platt map on one signed feature. A label-free threshold has no probability
map: its P(valid) is the empirical CDF of the calib scores, kept as ``calib_scores``. The 0/1
decision is ``P >= threshold`` for ``decision: probability`` and ``direction * x >= threshold``
for ``decision: feature``.

``Scorer.load`` refuses a bundle whose format version, feature names, tensor shapes or model
identity do not fit, and never unpickles anything: only JSON and safetensors are read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .atomic import atomic_path, atomic_write_text

FORMAT_VERSION = 1
TENSORS = ("mean", "std", "weight", "bias")


class BundleError(ValueError):
    """A bundle is malformed or does not fit; the message says what is wrong."""


@dataclass
class Scorer:
    """A loaded (or freshly exported) scorer.

    Attributes:
        meta: the ``scorer.json`` content.
        tensors: ``mean``, ``std``, ``weight`` ``(F,)``, ``bias`` ``(1,)`` and, label-free,
            ``calib_scores`` ``(M,)``.
    """

    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    path: Path | None = None
    _capture: Any = field(default=None, repr=False)

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])

    # -- scoring precomputed features -------------------------------------------------------

    def predict_proba_features(self, X: np.ndarray, names: list[str] | None = None) -> np.ndarray:
        """``(N, 2)`` from features ``X (N, F')``; ``names`` (a store's feature names) select
        and order this scorer's columns, and must contain all of them."""
        X = self._columns(X, names)
        t = self.tensors
        if "calib_scores" in t:
            s = self._signed(X)
            calib = t["calib_scores"].numpy()
            p = np.searchsorted(calib, s, side="right") / len(calib)
        else:
            z = (X - t["mean"].numpy()) / t["std"].numpy() @ t["weight"].numpy() + float(
                t["bias"][0]
            )
            p = 1 / (1 + np.exp(-z / self.meta["temperature"]))
        return np.stack([1 - p, p], axis=1)

    def predict_features(self, X: np.ndarray, names: list[str] | None = None) -> np.ndarray:
        """``(N,)`` 0/1 decisions at the bundle's threshold."""
        if self.meta["decision"] == "feature":
            return (self._signed(self._columns(X, names)) >= self.meta["threshold"]).astype(
                np.int64
            )
        return (self.predict_proba_features(X, names)[:, 1] >= self.meta["threshold"]).astype(
            np.int64
        )

    def _signed(self, X: np.ndarray) -> np.ndarray:
        return self.meta["direction"] * X[:, 0]

    def _columns(self, X: np.ndarray, names: list[str] | None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if names is None:
            if X.shape[1] != len(self.feature_names):
                raise BundleError(
                    f"expected {len(self.feature_names)} feature columns, got {X.shape[1]}"
                )
            return X
        missing = [n for n in self.feature_names if n not in names]
        if missing:
            raise BundleError(
                f"the features lack {len(missing)} of this scorer's, e.g. {missing[:3]}"
            )
        return X[:, [names.index(n) for n in self.feature_names]]

    # -- scoring texts ----------------------------------------------------------------------

    def _capture_for_texts(self):
        if self._capture is None:
            from .capture import SpectralCapture
            from .config import CaptureConfig, ModelConfig
            from .models import load_frozen

            m = self.meta["model"]
            lm = load_frozen(
                ModelConfig(
                    name_or_path=m["name_or_path"], revision=m["revision"], dtype=m["dtype"]
                )
            )
            check_model(self.meta, lm.identity)
            capture = SpectralCapture(lm, CaptureConfig(**self.meta["capture"]))
            missing = [n for n in self.feature_names if n not in capture.names]
            if missing:
                raise BundleError(f"the capture config does not produce {missing[:3]}...")
            self._capture = capture
        return self._capture

    def features(
        self,
        texts: list[str],
        span_starts: list[int] | None = None,
        batch_size: int = 4,
        progress: bool = False,
    ):
        """The frozen model's features of ``texts`` (an :class:`Extraction`).

        A scorer that reads the solution span (``capture.span: solution``) needs
        ``span_starts``, or texts written as ``Problem: ...\nSolution: ...`` (the record
        format), whose solution it then finds by that marker.
        """
        capture = self._capture_for_texts()
        if span_starts is None and capture.cfg.span == "solution":
            span_starts = [_solution_start(t, i) for i, t in enumerate(texts)]
        return capture.extract(
            texts, span_starts=span_starts, batch_size=batch_size, progress=progress
        )

    def predict_proba(
        self, texts: list[str], span_starts: list[int] | None = None, batch_size: int = 4
    ) -> np.ndarray:
        """``(N, 2)`` for raw texts: loads the frozen model and runs the same capture.
        Texts the capture skips (too long under ``overflow: skip``) get NaN rows."""
        ex = self.features(texts, span_starts, batch_size)
        out = np.full((len(texts), 2), np.nan)
        keep = ~ex.skipped.numpy()
        if keep.any():
            out[keep] = self.predict_proba_features(ex.values.numpy()[keep], ex.names)
        return out

    def predict(
        self, texts: list[str], span_starts: list[int] | None = None, batch_size: int = 4
    ) -> np.ndarray:
        """``(N,)`` 0/1 decisions for raw texts (-1 where the text was skipped)."""
        ex = self.features(texts, span_starts, batch_size)
        out = np.full(len(texts), -1, dtype=np.int64)
        keep = ~ex.skipped.numpy()
        if keep.any():
            out[keep] = self.predict_features(ex.values.numpy()[keep], ex.names)
        return out

    # -- files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the bundle folder (each file to a temp name, then renamed)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        validate(self.meta, self.tensors)
        with atomic_path(path / "weights.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.tensors.items()}, tmp)
        meta = json.dumps(self.meta, indent=1, default=_json_default)
        atomic_write_text(path / "scorer.json", meta)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path, model_identity: dict | None = None) -> Scorer:
        """Read and validate a bundle. ``model_identity`` (a ``FrozenLM.identity``), when
        given, must match the bundle's model. Only ``scorer.json`` and
        ``weights.safetensors`` are read; anything else in the folder is ignored."""
        path = Path(path)
        meta_path, weights_path = path / "scorer.json", path / "weights.safetensors"
        if not meta_path.is_file() or not weights_path.is_file():
            raise BundleError(
                f"{path}: not a scorer bundle (needs scorer.json and weights.safetensors)"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise BundleError(f"{meta_path}: not valid JSON: {err}") from None
        try:
            tensors = load_file(weights_path)
        except Exception as err:  # safetensors raises its own error types
            raise BundleError(f"{weights_path}: not a safetensors file ({err})") from None
        validate(meta, tensors, where=str(path))
        if model_identity is not None:
            check_model(meta, model_identity)
        return cls(meta, tensors, path)


def validate(meta: dict, tensors: dict[str, torch.Tensor], where: str = "bundle") -> None:
    """Format version, feature names and tensor shapes; raise :class:`BundleError`."""
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{where}: unknown format_version {version!r} (this probes reads {FORMAT_VERSION})"
        )
    for key in (
        "feature_names",
        "model",
        "capture",
        "kind",
        "decision",
        "threshold",
        "temperature",
    ):
        if key not in meta:
            raise BundleError(f"{where}: scorer.json lacks {key!r}")
    names = meta["feature_names"]
    if not isinstance(names, list) or not names or len(set(names)) != len(names):
        raise BundleError(f"{where}: feature_names must be a non-empty list of unique names")
    F = len(names)
    expected = {"mean": (F,), "std": (F,), "weight": (F,), "bias": (1,)}
    for name, shape in expected.items():
        if name not in tensors:
            raise BundleError(f"{where}: weights.safetensors lacks tensor {name!r}")
        if tuple(tensors[name].shape) != shape:
            raise BundleError(
                f"{where}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                f"expected {shape} for {F} feature names"
            )
    if meta["decision"] not in ("probability", "feature"):
        raise BundleError(
            f"{where}: decision must be 'probability' or 'feature', got {meta['decision']!r}"
        )
    if meta["decision"] == "feature" and (F != 1 or meta.get("direction") not in (1, -1)):
        raise BundleError(f"{where}: a feature decision needs one feature and direction +-1")


def check_model(meta: dict, identity: dict) -> None:
    """The bundle's model must be this model (name, revision, weights hash)."""
    want = meta["model"]
    diff = [
        k for k in ("name_or_path", "revision", "weights_hash") if want.get(k) != identity.get(k)
    ]
    if diff:
        detail = "; ".join(f"{k}: bundle {want.get(k)!r}, model {identity.get(k)!r}" for k in diff)
        raise BundleError(f"the bundle was made with another model ({detail})")


def from_fitted(
    fitted, model: dict, capture: dict, metrics: dict | None = None, config: dict | None = None
) -> Scorer:
    """A :class:`Scorer` from an experiment's fitted scorer."""
    from . import __version__
    from .scorers import LogisticCalibrator, ThresholdBaseline

    m = fitted.model
    meta = {
        "format_version": FORMAT_VERSION,
        "probes_version": __version__,
        "name": fitted.spec.name,
        "kind": fitted.spec.kind,
        "model": model,
        "tokenizer": {"add_special_tokens": False, "padding_side": "right"},
        "capture": capture,
        "feature_names": list(fitted.names),
        "test_metrics": metrics or {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config or {},
    }
    if isinstance(m, LogisticCalibrator):
        tensors = {
            "mean": torch.as_tensor(m.mean_, dtype=torch.float64),
            "std": torch.as_tensor(m.std_, dtype=torch.float64),
            "weight": torch.as_tensor(m.coef_, dtype=torch.float64),
            # The prior correction is a constant on the logit: folded into the bias.
            "bias": torch.tensor([m.intercept_ + m.prior_shift_], dtype=torch.float64),
        }
        meta.update(
            decision="probability",
            threshold=0.5,
            temperature=float(m.temperature_),
            prior_shift=float(m.prior_shift_),
            weight_decay=float(m.weight_decay_),
        )
    elif isinstance(m, ThresholdBaseline):
        j = m.feature_index_
        meta["feature_names"] = [fitted.names[j]]
        meta.update(decision="feature", threshold=float(m.threshold_), direction=int(m.direction_))
        one = torch.ones(1, dtype=torch.float64)
        if m.platt_ is not None:
            coef, icpt = float(m.platt_.coef_[0, 0]), float(m.platt_.intercept_[0])
            # Platt on s = direction * x: logit = coef * direction * x + icpt.
            tensors = {
                "mean": 0 * one,
                "std": one,
                "weight": one * coef * m.direction_,
                "bias": one * icpt,
            }
        else:
            tensors = {
                "mean": 0 * one,
                "std": one,
                "weight": 0 * one,
                "bias": 0 * one,
                "calib_scores": torch.as_tensor(m.calib_scores_, dtype=torch.float64),
            }
        meta["temperature"] = 1.0
    else:
        raise TypeError(f"cannot export a {type(m).__name__}")
    return Scorer(meta, tensors)


def _solution_start(text: str, i: int) -> int:
    from .data.records import SOLUTION_MARKER

    at = text.find(SOLUTION_MARKER)
    if at < 0:
        raise BundleError(
            f"text #{i}: this scorer reads the solution only; pass span_starts, or write the "
            f"text as 'Problem: ...{SOLUTION_MARKER!r}...'"
        )
    return at + len(SOLUTION_MARKER)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
