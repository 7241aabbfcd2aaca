"""Typed configuration: dataclasses read from YAML, every option checked where it comes in.

Each option is documented on its field. Unknown keys and wrong values raise a
:class:`ConfigError` that names the option (and the file, when there is one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .spectral import LAPLACIAN_KINDS


class ConfigError(ValueError):
    """A configuration option is unknown or has a bad value; the message names it."""


#: Families computed when a capture config does not list its own: every family whose cost
#: is one eigenvalue solve per layer (no eigenvectors), plus the O(T) directed ones.
DEFAULT_FAMILIES: tuple[str, ...] = (
    "eig_low",
    "eig_high",
    "fiedler",
    "gap",
    "eigengap",
    "spectral_entropy",
    "eig_mean",
    "eig_std",
    "lapeig",
    "attn_logdet",
)


@dataclass(frozen=True)
class CaptureConfig:
    """What the streaming capture computes for each text.

    The config is part of a feature store's identity: change any field and the features
    (and their names) change.
    """

    #: Decoder layers to read: ``"all"`` or a list of indices (negative counts from the end).
    layers: str | tuple[int, ...] = "all"
    #: Feature families to compute (see ``probes.features.FAMILIES``); ``"all"`` for every one.
    families: str | tuple[str, ...] = DEFAULT_FAMILIES
    #: Undirected-graph Laplacian for the eigenvalue families: ``sym`` (normalized, spectrum
    #: in [0, 2], comparable across lengths), ``combinatorial`` (D - W) or ``rw`` (random walk,
    #: computed through its similar symmetric form). ``fiedler`` always uses ``sym``.
    laplacian: str = "sym"
    #: ``mean``: one graph per layer from the head-averaged attention; ``each``: one per head.
    heads: str = "mean"
    #: How many eigenvalues the ``eig_low``/``eig_high``/``lapeig`` families keep, and the
    #: range of ``eigengap``.
    k: int = 4
    #: Analysed span: ``full`` text, or ``solution`` only (tokens from a given character
    #: offset on; the capture then takes the sub-matrix of attention over that span).
    span: str = "full"
    #: Longest text, in tokens, that is read; longer ones follow ``overflow``.
    max_tokens: int = 1024
    #: What happens to a text longer than ``max_tokens``: ``truncate`` (keep the first
    #: ``max_tokens`` tokens, flagged; skipped if that leaves < 2 tokens of the analysed
    #: span), ``skip`` (no features, flagged) or ``error``.
    overflow: str = "truncate"
    #: Precision of the eigensolvers: ``float64`` (default, exact to ~1e-12) or ``float32``.
    eig_dtype: str = "float64"
    #: Share of the highest graph frequencies counted by ``hfer``.
    hfer_fraction: float = 0.1

    def __post_init__(self) -> None:
        # Lists from YAML become tuples so that the config stays hashable and frozen.
        for name in ("layers", "families"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        _choice("laplacian", self.laplacian, LAPLACIAN_KINDS)
        _choice("heads", self.heads, ("mean", "each"))
        _choice("span", self.span, ("full", "solution"))
        _choice("overflow", self.overflow, ("truncate", "skip", "error"))
        _choice("eig_dtype", self.eig_dtype, ("float64", "float32"))
        if isinstance(self.layers, str) and self.layers != "all":
            raise ConfigError(
                f"option 'layers': expected 'all' or a list of ints, got {self.layers!r}"
            )
        if not isinstance(self.layers, str) and not all(isinstance(i, int) for i in self.layers):
            raise ConfigError(f"option 'layers': expected a list of ints, got {self.layers!r}")
        if not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"option 'k': expected an int >= 1, got {self.k!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 2:
            raise ConfigError(f"option 'max_tokens': expected an int >= 2, got {self.max_tokens!r}")
        if not 0 < self.hfer_fraction <= 1:
            raise ConfigError(
                f"option 'hfer_fraction': expected a value in (0, 1], got {self.hfer_fraction!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


@dataclass(frozen=True)
class ModelConfig:
    """Which frozen causal LM to read."""

    #: An embedded short name (``smollm2-135m``, ``tiny-llama``, ``tiny-gpt2``), a Hugging Face
    #: hub id or a local folder.
    name_or_path: str = "smollm2-135m"
    #: Hub revision (branch, tag or commit) for hub ids; ignored for embedded names.
    revision: str | None = None
    #: Weights precision: ``float32`` or ``bfloat16``.
    dtype: str = "float32"
    #: ``cpu``, ``cuda`` or ``cuda:N``.
    device: str = "cpu"

    def __post_init__(self) -> None:
        _choice("dtype", self.dtype, ("float32", "bfloat16", "float16"))
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"option 'device': expected cpu, cuda or cuda:N, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DataConfig:
    """Which records, and how they are split."""

    #: A record file (``.jsonl``/``.csv``/``.parquet``, e.g. from ``probes data build``) or a
    #: Hugging Face dataset name.
    source: str = "data/gsm-perturb.jsonl"
    #: Our field -> your column, for your own data (e.g. ``{text: response, label: ok}``).
    mapping: dict[str, str] | None = None
    #: train / calib / test shares; groups (problems) never cross splits.
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    #: Split seed.
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.fractions, list):
            object.__setattr__(self, "fractions", tuple(self.fractions))
        fr = self.fractions
        if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
            raise ConfigError(f"option 'fractions': expected 3 shares summing to 1, got {fr!r}")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "fractions": list(self.fractions)}


@dataclass(frozen=True)
class TrainerConfig:
    """Lightning ``Trainer`` settings for extraction (Lightning's own names and meanings)."""

    #: ``cpu``, ``gpu``/``cuda`` or ``auto``.
    accelerator: str = "cpu"
    #: Devices per node (an int, or ``auto``).
    devices: int | str = 1
    #: Nodes; with ``strategy: ddp`` each node runs ``devices`` processes.
    num_nodes: int = 1
    #: ``auto`` for one process, ``ddp`` for several (gloo on CPU, NCCL on GPUs).
    strategy: str = "auto"


@dataclass(frozen=True)
class ExtractConfig:
    """``probes extract``: records + model + capture config -> feature store."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    #: Store folder; by default ``<stores_dir>/<data name>-<hash of model, capture, data>``.
    store: str | None = None
    #: Where default store folders go.
    stores_dir: str = "stores"
    #: Texts per forward pass.
    batch_size: int = 4
    #: Records per shard file (a crash loses at most this many per rank).
    shard_size: int = 64

    def __post_init__(self) -> None:
        for name in ("batch_size", "shard_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"option {name!r}: expected an int >= 1, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = (
                value.to_dict()
                if hasattr(value, "to_dict")
                else (dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value)
            )
        return out


@dataclass(frozen=True)
class InspectConfig:
    """``probes inspect``: a per-layer spectrum summary of one text."""

    model: ModelConfig = field(default_factory=ModelConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)


def _choice(option: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"option {option!r}: expected one of {list(choices)}, got {value!r}")


T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) dict, refusing unknown keys by name."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    prefix = f"{where}." if where else ""
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(prefix + u for u in unknown)}; "
            f"known options of {cls.__name__}: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        sub = fields[name].default_factory  # nested dataclass sections
        if dataclasses.is_dataclass(sub) and isinstance(value, dict):
            value = from_dict(sub, value, prefix + name)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{prefix}{err}") from None


def load_yaml(path: str | Path, cls: type[T]) -> T:
    """Read ``cls`` from a YAML file; errors name the file and the option."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    try:
        return from_dict(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
