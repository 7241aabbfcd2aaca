"""Typed configuration: dataclasses read from YAML, every option checked where it comes in.

Each option is documented on its field. Unknown keys, values of the wrong type (checked
against the field's annotation: a bool is not an int, a string is not a list) and values out
of range raise a :class:`ConfigError` that names the option (and the file, when there is one).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from .errors import ConfigError
from .spectral import LAPLACIAN_KINDS

#: How a solution is cut into steps (``probes.steps.segment``).
STEP_MODES = ("lines", "sentences")


def _choice(option: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"option {option!r}: expected one of {list(choices)}, got {value!r}")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _check_name(option: str, value: Any, what: str) -> None:
    """Names become folder and W&B artifact names: letters, digits, ``.``, ``_``, ``-``."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"option {option!r}: {value!r} is not a valid {what} name (letters, digits, '.', "
            "'_' and '-', starting with a letter or digit; no path separators, no '..')"
        )


def _at_least(option: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"option {option!r}: expected an int >= {low}, got {value!r}")


TEXT_FORMATS = ("auto", "plain", "chat")


class Options:
    """Base of every config section: ``to_dict`` gives plain JSON/YAML data."""

    def to_dict(self) -> dict[str, Any]:
        return json_ready(self)


#: Families computed when a capture config does not list its own: every family that needs
#: only the ends of the spectrum or traces, plus the O(T) directed ones, without duplicate
#: columns: ``gap`` is ``lambda_2 - 0``, always ``eig_low/k0``, and ``fiedler`` is
#: ``eig_low/k0`` of the default ``sym`` Laplacian (add it for ``combinatorial``).
#: ``eig_entropy`` needs the whole spectrum and is not among them: leaving it out of the
#: spectral calibrator moved the cross-validated AUROC by at most 0.002 on gsm-perturb (both
#: modes), CHAMP and generate (docs/benchmark.md), for a dense solve of every graph.
DEFAULT_FAMILIES: tuple[str, ...] = (
    "eig_low",
    "eig_high",
    "eigengap",
    "eig_mean",
    "eig_std",
    "lapeig",
    "attn_logdet",
)


@dataclass(frozen=True)
class CaptureConfig(Options):
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
    #: How the ends of the spectrum (``eig_low``, ``eig_high``, ``fiedler``, ``gap``,
    #: ``eigengap``) are solved under ``float64``: ``dense`` (a full float64 ``eigvalsh``),
    #: ``mixed`` (float32 tridiagonal reduction, float64 Rayleigh-Ritz refinement with a
    #: residual certificate, dense fallback; ``probes.eigen``) or ``auto`` (``mixed`` where
    #: it was measured faster: 704 <= T <= 1088 on CPU). Either way every feature is within
    #: 1e-6 of the dense float64 value.
    eig_method: str = "auto"
    #: Share of the highest graph frequencies counted by ``hfer``.
    hfer_fraction: float = 0.1
    #: Layer whose mean-pooled output hidden state is stored for the hidden-state probe
    #: baseline (``hidden_mean/Lxx/kNNN``, one column per hidden unit): an index, ``middle``,
    #: or ``null`` for none.
    probe_layer: int | str | None = "middle"
    #: Per-step features (``probes.stepfeatures``) and confounds, stored beside the text's
    #: row as a second table keyed by record and step: ``null`` (none), ``lines`` or
    #: ``sentences``, the segmentation of ``probes.steps.segment``.
    steps: str | None = None
    #: Layers whose head-mean attention gives the per-step features: ``"all"`` (every layer
    #: in ``layers``) or a list of indices. Each step costs a Fiedler value of its prefix on
    #: each of them, so a few layers keep long solutions affordable.
    step_layers: str | tuple[int, ...] = "all"

    def __post_init__(self) -> None:
        # Lists from YAML become tuples so that the config stays hashable and frozen.
        for name in ("layers", "families", "step_layers"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        _choice("laplacian", self.laplacian, LAPLACIAN_KINDS)
        _choice("heads", self.heads, ("mean", "each"))
        _choice("span", self.span, ("full", "solution"))
        _choice("overflow", self.overflow, ("truncate", "skip", "error"))
        _choice("eig_dtype", self.eig_dtype, ("float64", "float32"))
        _choice("eig_method", self.eig_method, ("auto", "dense", "mixed"))
        if isinstance(self.layers, str) and self.layers != "all":
            raise ConfigError(
                f"option 'layers': expected 'all' or a list of ints, got {self.layers!r}"
            )
        if not isinstance(self.layers, str) and not all(isinstance(i, int) for i in self.layers):
            raise ConfigError(f"option 'layers': expected a list of ints, got {self.layers!r}")
        if self.steps is not None:
            _choice("steps", self.steps, STEP_MODES)
        if self.steps is None and self.step_layers != "all":
            raise ConfigError("option 'step_layers' is set, but 'steps' is null: set steps too")
        if isinstance(self.step_layers, str) and self.step_layers != "all":
            raise ConfigError(
                f"option 'step_layers': expected 'all' or a list of ints, got {self.step_layers!r}"
            )
        if not isinstance(self.step_layers, str) and not all(
            isinstance(i, int) for i in self.step_layers
        ):
            raise ConfigError(
                f"option 'step_layers': expected a list of ints, got {self.step_layers!r}"
            )
        if not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"option 'k': expected an int >= 1, got {self.k!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 2:
            raise ConfigError(f"option 'max_tokens': expected an int >= 2, got {self.max_tokens!r}")
        if isinstance(self.probe_layer, str) and self.probe_layer != "middle":
            raise ConfigError(
                f"option 'probe_layer': expected an int, 'middle' or null, got {self.probe_layer!r}"
            )
        if not 0 < self.hfer_fraction <= 1:
            raise ConfigError(
                f"option 'hfer_fraction': expected a value in (0, 1], got {self.hfer_fraction!r}"
            )

    def identity(self) -> dict[str, Any]:
        """The config as a feature store's manifest records it: without the step options
        when ``steps`` is off, so that stores made before they existed keep their names."""
        out = self.to_dict()
        if self.steps is None:
            out.pop("steps"), out.pop("step_layers")
        return out


@dataclass(frozen=True)
class ModelConfig(Options):
    """Which frozen causal LM to read."""

    #: An embedded short name (``smollm2-135m``, ``tiny-llama``, ``tiny-gpt2``), a Hugging Face
    #: hub id or a local folder.
    name_or_path: str = "smollm2-135m"
    #: Hub revision (branch, tag or commit) for hub ids; ignored for embedded names.
    revision: str | None = None
    #: Weights precision: ``float32``, ``bfloat16`` or ``float16``. Attention is upcast to
    #: the eigensolver's precision before any spectrum, and the confounds are computed from
    #: float32 logits.
    dtype: str = "float32"
    #: Where the model runs, and with it the capture, scoring, evaluation, generation and the
    #: Lightning Trainer: ``auto`` (a GPU when torch sees one, else the CPU), ``cpu``,
    #: ``cuda`` (under DDP each process takes its local rank's GPU) or ``cuda:N``. Asking
    #: for CUDA where there is none is an error (see probes/devices.py).
    device: str = "auto"
    #: ``auto`` (or ``balanced``, ``sequential``): spread a model too big for one GPU over
    #: all visible GPUs, layer by layer (Accelerate). One process; ``device`` must not be
    #: ``cpu``. ``null``: the whole model on ``device``.
    device_map: str | None = None
    #: Add the tokenizer's special tokens (BOS...) to every text: ``null`` (default) does what
    #: the tokenizer does on its own (Llama, Gemma and Mistral add BOS, their attention
    #: sink); the embedded ``smollm2-135m`` is read without (its GGUF vocabulary defines
    #: none). Recorded in every store and bundle, and enforced when they are read.
    add_special_tokens: bool | None = None
    #: How a record becomes the text the model reads: ``plain`` (``Problem: ...\nSolution:
    #: ...``), ``chat`` (the problem as the user turn and the solution as the assistant turn,
    #: through the tokenizer's chat template; ``span: solution`` is the assistant's content),
    #: or ``auto``: the format a record was generated in (``meta.text_format``, set by the
    #: ``generate`` builder), else ``plain``.
    text_format: str = "auto"

    def __post_init__(self) -> None:
        _choice("dtype", self.dtype, ("float32", "bfloat16", "float16"))
        _choice("text_format", self.text_format, TEXT_FORMATS)
        from .devices import DEVICE_MAPS, DEVICE_RE

        if not isinstance(self.device, str) or not DEVICE_RE.fullmatch(self.device):
            raise ConfigError(
                f"option 'device': expected auto, cpu, cuda or cuda:N, got {self.device!r}"
            )
        if self.device_map is not None:
            _choice("device_map", self.device_map, DEVICE_MAPS)
            if self.device == "cpu":
                raise ConfigError(
                    "option 'device_map': spreads the model over GPUs, but device is 'cpu'; "
                    "set device: cuda (or auto), or device_map: null"
                )


@dataclass(frozen=True)
class DataConfig(Options):
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
        ok = isinstance(fr, tuple) and len(fr) == 3
        ok = ok and all(isinstance(f, int | float) and not isinstance(f, bool) for f in fr)
        if not ok or any(f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
            raise ConfigError(f"option 'fractions': expected 3 shares summing to 1, got {fr!r}")
        if fr[0] == 0:
            raise ConfigError(f"option 'fractions': the train share must be > 0, got {fr!r}")
        _at_least("seed", self.seed, 0)


@dataclass(frozen=True)
class TrainerConfig(Options):
    """Lightning ``Trainer`` settings for extraction (Lightning's own names and meanings).

    There is no accelerator here: the Trainer's follows ``model.device``."""

    #: Processes per node: an int, or ``auto`` (every GPU when the model is on CUDA, one
    #: process on the CPU). More than one needs ``strategy: ddp``.
    devices: int | str = 1
    #: Nodes; with ``strategy: ddp`` each node runs ``devices`` processes.
    num_nodes: int = 1
    #: ``auto`` for one process, ``ddp`` for several (gloo on CPU, NCCL on GPUs).
    strategy: str = "auto"

    def __post_init__(self) -> None:
        if self.devices != "auto":
            _at_least("devices", self.devices, 1)
        _at_least("num_nodes", self.num_nodes, 1)
        _choice("strategy", self.strategy, ("auto", "ddp"))


@dataclass(frozen=True)
class ExtractConfig(Options):
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
            _at_least(name, getattr(self, name), 1)


#: Every feature but the confounds, the hidden-state probe and the log-det baseline.
SPECTRAL = ("*", "!confound/*", "!hidden_mean/*", "!attn_logdet/*")


@dataclass(frozen=True)
class ScorerSpec(Options):
    """One scorer of an experiment."""

    #: Its name in tables, metrics (``test/<name>/auroc``) and exports.
    name: str
    #: ``threshold`` (training-free, one feature) or ``logistic`` (LogisticCalibrator).
    kind: str
    #: Feature name patterns it may use (``fiedler/*``, ``*/L1[0-9]``, ``!confound/*``).
    select: tuple[str, ...] = SPECTRAL
    #: threshold: a feature name, or ``auto`` (best calib AUROC among ``select``).
    feature: str = "auto"
    #: threshold: quantile threshold without labels.
    label_free: bool = False
    #: logistic: L2 strength on standardized weights; a list of strengths, or ``auto``
    #: (1e-3 ... 10 by decades), keeps the one with the lowest calib NLL.
    weight_decay: float | str | tuple[float, ...] = "auto"
    #: logistic: temperature scaling on calib.
    temperature: bool = True
    #: logistic: add log(n_pos / n_neg) of train to the logit, undoing the balanced weights.
    prior_correction: bool = True
    #: logistic: L-BFGS steps at most (early stopping on calib loss).
    max_epochs: int = 50

    def __post_init__(self) -> None:
        _check_name("name", self.name, "scorer")
        _choice("kind", self.kind, ("threshold", "logistic"))
        _at_least("max_epochs", self.max_epochs, 1)
        from .estimators.logistic import weight_decay_grid  # lazy: keeps config light

        try:
            weight_decay_grid(self.weight_decay)
        except ValueError as err:
            raise ConfigError(f"scorer {self.name!r}: {err}") from None
        if isinstance(self.weight_decay, list):
            object.__setattr__(self, "weight_decay", tuple(self.weight_decay))
        if isinstance(self.select, list | str):
            value = (self.select,) if isinstance(self.select, str) else tuple(self.select)
            object.__setattr__(self, "select", value)


#: The spectral features and every confound: nested over ``confounds``, it asks whether the
#: spectra add to what length and log-probability already say.
SPECTRAL_CONFOUNDS = ("*", "!hidden_mean/*", "!attn_logdet/*")

DEFAULT_SCORERS = (
    ScorerSpec("threshold", "threshold"),
    ScorerSpec("spectral_lr", "logistic"),
    ScorerSpec("spectral_confounds", "logistic", select=SPECTRAL_CONFOUNDS),
    # The whole span's length, measured before truncation (a capped token count is not).
    ScorerSpec(
        "length",
        "logistic",
        select=("confound/n_tokens_full", "confound/n_chars", "confound/n_steps"),
    ),
    ScorerSpec("logprob", "logistic", select=("confound/logprob",)),
    # Every confound at once: length, log-probability, perplexity and predictive entropy.
    ScorerSpec("confounds", "logistic", select=("confound/*",)),
    ScorerSpec("attn_logdet", "logistic", select=("attn_logdet/*",)),
    ScorerSpec("hidden_probe", "logistic", select=("hidden_mean/*",)),
)


@dataclass(frozen=True)
class BuildConfig(Options):
    """Build ``data.source`` with a builder when the file does not exist yet."""

    #: ``champ``, ``gsm-perturb``, ``arith-perturb``, ``generate``, or ``null`` (no build).
    builder: str | None = None
    #: The builder's options (``n``, ``mode``, ``task``, ``terms``, ``digits``...).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WandbConfig(Options):
    """Weights & Biases logging."""

    #: ``offline`` (default: nothing leaves the machine; ``wandb sync`` uploads later),
    #: ``online`` or ``disabled``. ``$WANDB_MODE`` overrides it; under a sweep agent the
    #: default is ``online``.
    mode: str = "offline"
    #: W&B project of the runs.
    project: str = "probes"
    #: W&B entity (user or team); ``null`` for your default.
    entity: str | None = None
    #: Upload the feature store's files with its artifact. Off (default): the store is
    #: still logged, by reference (paths and checksums, nothing copied).
    log_store: bool = False

    def __post_init__(self) -> None:
        _choice("mode", self.mode, ("offline", "online", "disabled"))


@dataclass(frozen=True)
class EvalConfig(Options):
    """How the scorers are evaluated (see probes/crossval.py)."""

    #: ``0``: the single split's test records only. ``K >= 2``: grouped, stratified K-fold
    #: cross-validation over all records; inside each fold the other folds are split again
    #: into train and calib (``data.fractions``' ratio), and every record gets one
    #: out-of-fold prediction. ``auto``: 10 folds when the smaller class holds fewer than
    #: 200 records, else 5, and fewer folds where each test fold would hold fewer than 5
    #: records of the smaller class (the single split below 10).
    cv: int | str = "auto"
    #: With cross-validation, also export every scorer refit on all records
    #: (``bundles-refit/<name>`` beside ``bundles/``), its temperature fitted on the
    #: out-of-fold logits.
    refit: bool = False

    def __post_init__(self) -> None:
        if self.cv != "auto" and self.cv != 0:
            try:
                _at_least("cv", self.cv, 2)
            except ConfigError:
                raise ConfigError(
                    f"option 'cv': expected 'auto', 0 (the single split) or a number "
                    f"of folds >= 2, got {self.cv!r}"
                ) from None


@dataclass(frozen=True)
class ExperimentConfig(ExtractConfig):
    """``python train.py --config configs/<experiment>.yaml``: a whole calibration run.

    Every option of :class:`ExtractConfig` (data, model, capture, trainer, store...) plus:
    """

    #: Names the results folder and the W&B group.
    name: str = "experiment"
    build: BuildConfig = field(default_factory=BuildConfig)
    #: The scorers to fit and compare (see ScorerSpec).
    scorers: tuple[ScorerSpec, ...] = DEFAULT_SCORERS
    eval: EvalConfig = field(default_factory=EvalConfig)
    #: Grouped bootstrap resamples for the 95% intervals.
    n_boot: int = 500
    #: Seed of the bootstrap.
    seed: int = 0
    wandb: WandbConfig = field(default_factory=WandbConfig)
    #: Results go to ``<results_dir>/<name>/``.
    results_dir: str = "results"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_name("name", self.name, "experiment")
        _at_least("n_boot", self.n_boot, 2)
        _at_least("seed", self.seed, 0)
        specs = tuple(
            s if isinstance(s, ScorerSpec) else from_dict(ScorerSpec, s, "scorers")
            for s in self.scorers
        )
        object.__setattr__(self, "scorers", specs)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"option 'scorers': duplicate names in {names}")

    def extract_config(self) -> ExtractConfig:
        keys = {f.name for f in dataclasses.fields(ExtractConfig)}
        return ExtractConfig(**{k: getattr(self, k) for k in keys})


def json_ready(value: Any) -> Any:
    """Dataclasses, tuples and nested values as plain JSON/YAML data."""
    if dataclasses.is_dataclass(value):
        return {f.name: json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    return value


#: The configs shipped with the package (``probes train --config gsm-perturb``).
PACKAGED_CONFIGS = Path(__file__).parent / "configs"


def packaged_configs() -> list[str]:
    """Names of the shipped configs (``gsm-perturb``, ``champ``, ``tiny``...)."""
    return sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))


def config_path(source: str | Path) -> Path:
    """A config file: ``source`` itself when it is a file, else the packaged config of that
    name (``gsm-perturb`` or ``gsm-perturb.yaml``)."""
    path = Path(source)
    if path.is_file():
        return path
    packaged = PACKAGED_CONFIGS / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if path.parent == Path(".") and packaged.is_file():
        return packaged
    raise ConfigError(
        f"config file not found: {source} (neither a file nor a packaged config; packaged: "
        f"{', '.join(packaged_configs())})"
    )


_OVERRIDE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*=.*", re.S)


def load_config(cls: type[T], source: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Config ``cls`` from a YAML file or packaged config name (its defaults when ``None``),
    with ``key.sub=value`` overrides applied in order (OmegaConf's dot-list syntax: values
    read as YAML, ``[0, 5]`` a list, ``null`` none; W&B sweeps pass ``${args_no_hyphens}``
    in exactly this form).

    A ``base:`` key in a file names another file (relative to it) whose options it
    overrides, section by section; that file may name its own ``base:``. Unknown options
    and bad values raise :class:`ConfigError` naming the option and the file.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = None if source is None else config_path(source)
    node = OmegaConf.create({}) if path is None else _read_with_bases(path, [path.resolve()])
    if path is not None:  # the file on its own first, so that its errors name the file
        try:
            from_dict(cls, OmegaConf.to_container(node, resolve=True))
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    for item in overrides:
        if not _OVERRIDE.fullmatch(item):
            raise ConfigError(
                f"override {item!r}: expected key=value (e.g. capture.heads=each, n_boot=100)"
            )
        try:
            node = OmegaConf.merge(node, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as err:
            message = str(err).splitlines()[0]
            raise ConfigError(f"override {item!r}: {message}") from None
    data = OmegaConf.to_container(node, resolve=True)
    try:
        return from_dict(cls, data)
    except ConfigError as err:
        raise ConfigError(f"overrides {' '.join(overrides)}: {err}") from None


def load_experiment(source: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """An :class:`ExperimentConfig` (see :func:`load_config`)."""
    return load_config(ExperimentConfig, source, overrides)


def _read_with_bases(path: Path, chain: list[Path]):
    from omegaconf import OmegaConf

    data = _read_yaml(path)
    base = data.pop("base", None)
    node = OmegaConf.create(data)
    if base is None:
        return node
    base_path = (path.parent / base).resolve()
    if base_path in chain:
        loop = " -> ".join(str(p) for p in [*chain, base_path])
        raise ConfigError(f"{path}: option 'base' loops: {loop}")
    return OmegaConf.merge(_read_with_bases(base_path, [*chain, base_path]), node)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    return data


@dataclass(frozen=True)
class InspectConfig(Options):
    """``probes inspect``: a per-layer spectrum summary of one text."""

    model: ModelConfig = field(default_factory=ModelConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)


T = TypeVar("T")

#: Options that were replaced, and what to write instead.
MOVED = {
    ("TrainerConfig", "accelerator"): "the device is set once, by model.device (auto, cpu, "
    "cuda or cuda:N); the Trainer's accelerator follows it. Remove trainer.accelerator",
}


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) dict, refusing unknown keys and values of the
    wrong type by name."""
    prefix = f"{where}." if where else ""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(
            f"option {where or 'config'!r}: expected a section (a mapping of options), got {data!r}"
        )
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    for name in unknown:
        if (cls.__name__, name) in MOVED:
            raise ConfigError(f"option {prefix + name!r}: {MOVED[cls.__name__, name]}")
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(prefix + str(u) for u in unknown)}; "
            f"known options of {cls.__name__}: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        option = prefix + name
        sub = fields[name].default_factory  # nested dataclass sections
        if dataclasses.is_dataclass(sub) and not isinstance(value, sub):
            value = from_dict(sub, value, option)
        else:
            _check_type(value, hints[name], option, fields[name].type)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as err:
        message = str(err)
        if prefix and not message.startswith(prefix) and "option '" in message:
            message = message.replace("option '", f"option '{prefix}", 1)
        raise ConfigError(message) from None


def _check_type(value: Any, tp: Any, option: str, shown: Any) -> None:
    """Raise naming ``option`` unless ``value`` fits annotation ``tp`` (YAML lists fit
    tuples; ints fit floats; a bool fits only bool)."""
    if not _fits(value, tp):
        raise ConfigError(f"option {option!r}: expected {shown}, got {value!r}")


def _fits(value: Any, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(
            _fits(v, a) for v, a in zip(value, args, strict=True)
        )
    if origin is dict:
        return isinstance(value, Mapping) and all(
            _fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()
        )
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp | Mapping)
    return isinstance(value, tp)
