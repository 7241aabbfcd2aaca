"""Scorer bundles: a fitted scorer as ``scorer.json`` + ``weights.safetensors``, no pickle.

Every scorer is stored in one form:

    P(valid) = sigmoid((w . (x - mean) / std + b) / temperature)     (F features, in order)

A logistic calibrator is exactly that (``b`` is its bias plus its prior shift); a threshold
baseline is its Platt map on one signed feature. A label-free threshold has no probability
map: its P(valid) is the empirical CDF of the calib scores, kept as ``calib_scores``. The 0/1
decision is ``P >= threshold`` for ``decision: probability`` and ``direction * x >= threshold``
for ``decision: feature``.

``scorer.json`` records the sha256 of ``weights.safetensors`` and of its own content (the
canonical JSON of everything but the ``integrity`` entry). ``Scorer.load`` verifies both,
checks every value's type and range (temperature > 0 and finite, a finite threshold, finite
weights, ``std > 0``, unique feature names as many as the weights), the capture config and
the model identity, and never unpickles anything: only JSON and safetensors are read.

Texts are scored through the one record reader's span rule (:meth:`Record.span_start`), so
``Scorer.predict_proba``, ``probes score`` and ``evaluate.py`` give one text one score.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from . import jsonio
from .atomic import atomic_path, atomic_write_text
from .data.records import Record
from .errors import BundleError, ConfigError
from .steps import STEP_POSITION, positions

#: 2: ``integrity`` checksums. Version 1 bundles (no checksums) are refused: re-export them.
FORMAT_VERSION = 2
TENSORS = ("mean", "std", "weight", "bias")


@dataclass
class ScoredTexts:
    """What a bundle says of ``N`` texts.

    Attributes:
        p_valid: ``(N,)`` P(valid); NaN where skipped.
        decision: ``(N,)`` 0/1 at the bundle's threshold; -1 where skipped.
        n_tokens: ``(N,)`` tokens read; ``truncated``, ``skipped``: ``(N,)`` bool flags.
    """

    p_valid: np.ndarray
    decision: np.ndarray
    n_tokens: np.ndarray
    truncated: np.ndarray
    skipped: np.ndarray
    #: A step bundle's per-step output: for each text, one ``{"step", "start", "end",
    #: "p_wrong"}`` per step of its solution (characters of the solution; ``p_wrong`` NaN
    #: for a step cut off by truncation). ``None`` for a solution scorer.
    steps: list[list[dict]] | None = None
    #: A step bundle's ProcessBench call per text: the first step whose ``p_wrong`` reaches
    #: the bundle's threshold, ``None`` for "all steps correct" (or a skipped text).
    first_flagged: list[int | None] | None = None


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
    #: Where the frozen model runs when texts are scored (``model.device``: ``auto``,
    #: ``cpu``, ``cuda``, ``cuda:N``).
    device: str = "auto"
    #: Its weights' precision (``float32``, ``bfloat16``, ``float16``); ``None``: the one
    #: the scorer was fitted with (``meta["model"]["dtype"]``).
    dtype: str | None = None
    _capture: Any = field(default=None, repr=False)

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])

    @property
    def is_step(self) -> bool:
        """A step scorer (``kind: step``): P(step wrong) per step, P(valid) from the steps."""
        return self.meta["kind"] == "step"

    # -- scoring precomputed step features ----------------------------------------------------

    def step_contributions(self, X: np.ndarray, names: list[str] | None = None) -> np.ndarray:
        """``(M, F)`` each feature's term of the logit of P(step wrong), ``w_j (x_j -
        mean_j) / std_j / T``, for step features ``X (M, F')`` (a missing value is read as
        the train mean, ``impute``, and adds 0)."""
        X = self._columns(X, names)
        t = {k: v.numpy() for k, v in self.tensors.items()}
        X = np.where(np.isnan(X), t["impute"], X)
        return (X - t["mean"]) / t["std"] * t["weight"] / self.meta["temperature"]

    def step_logit_features(self, X: np.ndarray, names: list[str] | None = None) -> np.ndarray:
        """``(M,)`` logits of P(step wrong) of a step bundle from step features ``X (M, F')``:
        the sum of :meth:`step_contributions` and the bias."""
        bias = float(self.tensors["bias"][0]) / self.meta["temperature"]
        return self.step_contributions(X, names).sum(axis=1) + bias

    def solution_proba_from_steps(self, step_logits: Sequence[np.ndarray]) -> np.ndarray:
        """``(R,)`` P(valid) of ``R`` solutions from their steps' logits: the Platt map of
        the most suspicious step's logit (NaN without a read step)."""
        from .estimators.step import aggregate

        st = self.meta["steps"]
        s = aggregate(step_logits)
        return 1 / (1 + np.exp(-(st["solution_coef"] * s + st["solution_intercept"])))

    # -- scoring precomputed features -------------------------------------------------------

    def predict_proba_features(self, X: np.ndarray, names: list[str] | None = None) -> np.ndarray:
        """``(N, 2)`` from features ``X (N, F')``; ``names`` (a store's feature names) select
        and order this scorer's columns, and must contain all of them."""
        if self.is_step:
            raise BundleError(
                f"{self.meta['name']!r} is a step scorer: it scores a solution's steps, not "
                "its text features; use Scorer.score on texts (probes score --steps)"
            )
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
            tok = m["tokenization"]
            lm = load_frozen(
                ModelConfig(
                    name_or_path=m["name_or_path"],
                    revision=m["revision"],
                    dtype=self.dtype or m["dtype"],
                    device=self.device,
                    add_special_tokens=tok["add_special_tokens"],
                    text_format=tok["text_format"],
                )
            )
            check_model(self.meta, lm.identity)  # the tokenizer must still read as it did
            options = dict(self.meta["capture"])
            if not self.is_step:  # a solution scorer from a store with steps needs none
                options.pop("steps", None), options.pop("step_layers", None)
            capture = SpectralCapture(lm, CaptureConfig(**options))
            produced = capture.names + capture.step_names + [STEP_POSITION]
            missing = [n for n in self.feature_names if n not in produced]
            if missing:
                raise BundleError(f"the capture config does not produce {missing[:3]}...")
            self._capture = capture
        return self._capture

    def features(self, texts: Sequence[str | Record], batch_size: int = 4, progress: bool = False):
        """The frozen model's features (an :class:`Extraction`) of texts or records.

        A plain string is read as a ``text`` record. Records are rendered under the bundle's
        tokenization contract (text format, special tokens). A scorer that reads the
        solution span (``capture.span: solution``) finds it by the record rule: the
        ``solution`` of a ``problem`` + ``solution`` record, or what follows
        ``\nSolution: `` in a text.
        """
        capture = self._capture_for_texts()
        records = [
            t if isinstance(t, Record) else Record(id=str(i), label=None, group=str(i), text=t)
            for i, t in enumerate(texts)
        ]
        return capture.extract_records(records, batch_size=batch_size, progress=progress)

    def score(
        self, texts: Sequence[str | Record], batch_size: int = 4, progress: bool = False
    ) -> ScoredTexts:
        """P(valid), decisions and length flags of texts or records (see :meth:`features`);
        a step bundle adds each step's P(wrong) (:attr:`ScoredTexts.steps`)."""
        ex = self.features(texts, batch_size, progress)
        if self.is_step:
            return self._score_steps(ex)
        keep = ~ex.skipped.numpy()
        p = np.full(len(texts), np.nan)
        d = np.full(len(texts), -1, dtype=np.int64)
        if keep.any():
            X = ex.values.numpy()[keep]
            p[keep] = self.predict_proba_features(X, ex.names)[:, 1]
            d[keep] = self.predict_features(X, ex.names)
        return ScoredTexts(p, d, ex.n_tokens.numpy(), ex.truncated.numpy(), ~keep)

    @staticmethod
    def step_inputs(ex) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
        """A step bundle's inputs from an extraction with step tables: the column names
        (the capture's step features, then :data:`probes.steps.STEP_POSITION`), and per text
        ``X (S, Fs + 1)`` and ``read (S,)`` (False: the step was cut off by truncation)."""
        names = [*ex.step_names, STEP_POSITION]
        Xs, reads = [], []
        for rows, spans in zip(ex.step_values, ex.steps, strict=True):
            S = len(spans)
            pos = positions(np.arange(S), np.full(S, S))
            Xs.append(np.concatenate([rows.numpy().reshape(S, -1), pos[:, None]], axis=1))
            reads.append(np.array([sp.stop > sp.first for sp in spans], dtype=bool))
        return names, Xs, reads

    def _score_steps(self, ex) -> ScoredTexts:
        """A step bundle's scores of an extraction with step tables."""
        from .stepmetrics import first_flagged

        names, Xs, reads = self.step_inputs(ex)
        logits, steps, flagged = [], [], []
        for X, read, spans, skipped in zip(Xs, reads, ex.steps, ex.skipped, strict=True):
            z = np.full(len(spans), np.nan)
            if read.any() and not skipped:
                z[read] = self.step_logit_features(X[read], names)
            p = 1 / (1 + np.exp(-z))
            logits.append(z)
            steps.append(
                [
                    {"step": k, "start": sp.start, "end": sp.end, "p_wrong": float(p[k])}
                    for k, sp in enumerate(spans)
                ]
            )
            flagged.append(None if skipped else first_flagged(p, self.meta["threshold"]))
        p_valid = self.solution_proba_from_steps(logits)
        decision = np.array(
            [
                -1 if np.isnan(pv) else int(f is None)
                for pv, f in zip(p_valid, flagged, strict=True)
            ],
            dtype=np.int64,
        )
        return ScoredTexts(
            p_valid,
            decision,
            ex.n_tokens.numpy(),
            ex.truncated.numpy(),
            ex.skipped.numpy() | np.isnan(p_valid),
            steps=steps,
            first_flagged=flagged,
        )

    def predict_proba(self, texts: Sequence[str | Record], batch_size: int = 4) -> np.ndarray:
        """``(N, 2)`` for raw texts or records: loads the frozen model and runs the same
        capture. Texts the capture skips (too long under ``overflow: skip``) get NaN rows."""
        p = self.score(texts, batch_size).p_valid
        return np.stack([1 - p, p], axis=1)

    def predict(self, texts: Sequence[str | Record], batch_size: int = 4) -> np.ndarray:
        """``(N,)`` 0/1 decisions for raw texts or records (-1 where the text was skipped)."""
        return self.score(texts, batch_size).decision

    # -- files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the bundle folder (each file to a temp name, then renamed), with the
        checksums of both files in ``scorer.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = jsonio.strict({k: v for k, v in self.meta.items() if k != "integrity"})
        validate(meta, self.tensors)
        with atomic_path(path / "weights.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.tensors.items()}, tmp)
            weights_sha = _sha256(tmp.read_bytes())
        meta["integrity"] = {"weights.safetensors": weights_sha, "scorer.json": _meta_sha(meta)}
        atomic_write_text(path / "scorer.json", jsonio.dumps(meta, indent=1))
        self.meta, self.path = meta, path
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        model_identity: dict | None = None,
        *,
        device: str = "auto",
        dtype: str | None = None,
    ) -> Scorer:
        """Read, verify and validate a bundle. ``model_identity`` (a ``FrozenLM.identity``),
        when given, must match the bundle's model. Only ``scorer.json`` and
        ``weights.safetensors`` are read; anything else in the folder is ignored.

        ``device`` and ``dtype`` say where and in what precision the frozen model runs when
        texts are scored (:attr:`device`, :attr:`dtype`); they are checked now, before any
        model loads, so that a missing GPU is named at once."""
        from .config import ModelConfig
        from .devices import resolve_device

        try:
            ModelConfig(device=device, dtype=dtype or "float32")
        except ConfigError as err:
            raise ConfigError(f"Scorer.load: {err}") from None
        resolve_device(device)
        path = Path(path)
        meta_path, weights_path = path / "scorer.json", path / "weights.safetensors"
        if not meta_path.is_file() or not weights_path.is_file():
            raise BundleError(
                f"{path}: not a scorer bundle (needs scorer.json and weights.safetensors)"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BundleError(f"{meta_path}: not valid JSON: {err}") from None
        if not isinstance(meta, dict):
            raise BundleError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
        _check_version(meta, str(path))
        _check_integrity(meta, weights_path.read_bytes(), str(path))
        try:
            tensors = load_file(weights_path)
        except Exception as err:  # safetensors raises its own error types
            raise BundleError(f"{weights_path}: not a safetensors file ({err})") from None
        validate(meta, tensors, where=str(path))
        if model_identity is not None:
            check_model(meta, model_identity)
        return cls(meta, tensors, path, device=device, dtype=dtype)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _meta_sha(meta: dict) -> str:
    """sha256 of the canonical JSON of ``meta`` without its ``integrity`` entry."""
    body = {k: v for k, v in meta.items() if k != "integrity"}
    return _sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _check_version(meta: dict, where: str) -> None:
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        hint = " (made before bundles had checksums: re-run the experiment)" if version == 1 else ""
        raise BundleError(
            f"{where}: unknown format_version {version!r}; this probes reads {FORMAT_VERSION}{hint}"
        )


def _check_integrity(meta: dict, weights: bytes, where: str) -> None:
    sums = meta.get("integrity")
    if not isinstance(sums, dict):
        raise BundleError(f"{where}: scorer.json lacks its 'integrity' checksums")
    if sums.get("scorer.json") != _meta_sha(meta):
        raise BundleError(
            f"{where}/scorer.json: changed after export (its sha256 does not match the one "
            "recorded in 'integrity'); re-export the bundle"
        )
    if sums.get("weights.safetensors") != _sha256(weights):
        raise BundleError(
            f"{where}/weights.safetensors: damaged or replaced (its sha256 does not match "
            "scorer.json); re-export the bundle"
        )


def _number(meta: dict, key: str, where: str, low: float | None = None, strict_low=False):
    value = meta.get(key)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if strict_low else value >= low
    if not ok:
        bound = "" if low is None else f" {'>' if strict_low else '>='} {low}"
        raise BundleError(
            f"{where}: scorer.json {key!r} must be a finite number{bound}, got {value!r}"
        )
    return float(value)


def validate(meta: dict, tensors: dict[str, torch.Tensor], where: str = "bundle") -> None:
    """Every value's type and range, the capture config, feature names and tensor shapes;
    raise :class:`BundleError` naming the entry."""
    _check_version(meta, where)
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
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise BundleError(f"{where}: feature_names must be a non-empty list of unique names")
    model = meta["model"]
    if not isinstance(model, dict):
        raise BundleError(f"{where}: scorer.json 'model' must be an object")
    for key, types in (
        ("name_or_path", (str,)),
        ("revision", (str, type(None))),
        ("dtype", (str,)),
        ("weights_hash", (str, type(None))),
        ("tokenization", (dict,)),
    ):
        if key not in model or not isinstance(model[key], types):
            raise BundleError(
                f"{where}: scorer.json model.{key} is missing or of the wrong type "
                f"({model.get(key)!r})"
            )
    if not isinstance(meta["capture"], dict):
        raise BundleError(f"{where}: scorer.json 'capture' must be an object")
    from .config import CaptureConfig, from_dict

    try:
        from_dict(CaptureConfig, meta["capture"], "capture")
    except ConfigError as err:
        raise BundleError(f"{where}: scorer.json {err}") from None
    if meta["kind"] not in ("threshold", "logistic", "step"):
        raise BundleError(
            f"{where}: kind must be 'threshold', 'logistic' or 'step', got {meta['kind']!r}"
        )
    if meta["kind"] == "step":
        st = meta.get("steps")
        if not isinstance(st, dict) or meta["capture"].get("steps") is None:
            raise BundleError(f"{where}: a step scorer needs 'steps' and capture.steps")
        _number(st, "solution_coef", where)
        _number(st, "solution_intercept", where)
        if "impute" not in tensors or tuple(tensors["impute"].shape) != (len(names),):
            raise BundleError(f"{where}: a step scorer needs tensor 'impute' of shape (F,)")
    if meta["decision"] not in ("probability", "feature"):
        raise BundleError(
            f"{where}: decision must be 'probability' or 'feature', got {meta['decision']!r}"
        )
    threshold = _number(meta, "threshold", where)
    _number(meta, "temperature", where, low=0, strict_low=True)
    if meta["decision"] == "probability" and not 0 <= threshold <= 1:
        raise BundleError(f"{where}: a probability threshold must be in [0, 1], got {threshold}")
    if meta["decision"] == "feature" and (
        len(names) != 1
        or meta.get("direction") not in (1, -1)
        or isinstance(meta.get("direction"), bool)
    ):
        raise BundleError(f"{where}: a feature decision needs one feature and direction +-1")
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
    for name, t in tensors.items():
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise BundleError(f"{where}: tensor {name!r} must hold finite floats")
    if not bool((tensors["std"] > 0).all()):
        raise BundleError(f"{where}: tensor 'std' must be > 0 everywhere")
    calib = tensors.get("calib_scores")
    if calib is not None and (
        calib.ndim != 1 or not len(calib) or bool((calib[1:] < calib[:-1]).any())
    ):
        raise BundleError(f"{where}: tensor 'calib_scores' must be a sorted non-empty vector")


def check_model(meta: dict, identity: dict, other: str = "model") -> None:
    """The bundle's model must be this model: name, revision, weights hash, and the same
    tokenization (special tokens added, text format, chat template)."""
    want = meta["model"]
    diff = [
        f"{k}: bundle {want.get(k)!r}, {other} {identity.get(k)!r}"
        for k in ("name_or_path", "revision", "weights_hash")
        if want.get(k) != identity.get(k)
    ]
    tok_a, tok_b = want.get("tokenization") or {}, identity.get("tokenization") or {}
    diff += [
        f"tokenization.{k}: bundle {tok_a.get(k)!r}, {other} {tok_b.get(k)!r}"
        for k in sorted(set(tok_a) | set(tok_b))
        if tok_a.get(k) != tok_b.get(k)
    ]
    if diff:
        raise BundleError(
            f"the bundle was made with another model or tokenization ({'; '.join(diff)})"
        )


def _meta(name, kind, model, capture, names, metrics, config, fit) -> dict[str, Any]:
    """What every bundle's ``scorer.json`` says of itself, before its scorer's own entries."""
    from . import __version__

    return {
        "format_version": FORMAT_VERSION,
        "probes_version": __version__,
        "name": name,
        "kind": kind,
        "model": model,
        "capture": capture,
        "feature_names": list(names),
        "test_metrics": metrics or {},
        "fit": fit or {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config or {},
    }


def from_step_scorer(
    scorer,
    name: str,
    names: list[str],
    model: dict,
    capture: dict,
    metrics: dict | None = None,
    config: dict | None = None,
    fit: dict | None = None,
) -> Scorer:
    """A step :class:`Scorer` (``kind: step``) from a fitted
    :class:`probes.estimators.step.StepScorer` on the step features ``names``."""
    f64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    meta = _meta(name, "step", model, capture, names, metrics, config, fit)
    meta |= {
        "decision": "probability",
        # ProcessBench's threshold on P(step wrong); "never flag" (inf) is stored as 1.
        "threshold": float(min(scorer.threshold_, 1.0)),
        "temperature": float(scorer.temperature_),
        "steps": {
            "aggregate": "max_logit",
            "solution_coef": float(scorer.solution_coef_),
            "solution_intercept": float(scorer.solution_intercept_),
        },
    }
    tensors = {
        "mean": f64(scorer.mean_),
        "std": f64(scorer.std_),
        "weight": f64(scorer.weight_),
        "bias": f64([scorer.bias_]),
        "impute": f64(scorer.impute_),
    }
    return Scorer(meta, tensors)


def from_fitted(
    fitted,
    model: dict,
    capture: dict,
    metrics: dict | None = None,
    config: dict | None = None,
    fit: dict | None = None,
) -> Scorer:
    """A :class:`Scorer` from an experiment's fitted scorer; ``metrics`` are its measured
    quality and ``fit`` says what it was fitted, calibrated and measured on."""
    from .estimators import LogisticCalibrator, ThresholdBaseline

    m = fitted.model
    spec = fitted.spec
    meta = _meta(spec.name, spec.kind, model, capture, fitted.names, metrics, config, fit)
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
            coef, icpt = m.platt_.coef_, m.platt_.intercept_
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
