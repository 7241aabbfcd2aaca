"""Tiny randomly initialised causal LMs with a character tokenizer: no download, for tests,
``configs/tiny.yaml`` and quick trials. Deterministic: the same name gives the same weights."""

from __future__ import annotations

import hashlib
import string

import torch

from .models import FrozenLM

TINY_MODELS = ("tiny-llama", "tiny-gpt2", "tiny-llama-bos")

#: ``tiny-llama-bos``'s chat template: the BOS token, then one ``<|role|>`` block per turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_SEED = 0
# Larger than the usual 0.02 so that random attention is peaked rather than uniform and
# its spectra are not degenerate: tests then compare numbers that actually vary.
_INIT_RANGE = 0.3


def char_tokenizer(bos: bool = False):
    """A fast character-level tokenizer over printable ASCII (offsets supported).

    With ``bos``, it adds a ``<bos>`` token in front of every text (as Llama's, Gemma's and
    Mistral's tokenizers do) and has a chat template (:data:`CHAT_TEMPLATE`).
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<eos>"] + (["<bos>"] if bos else [])
    chars = sorted(set(string.printable))
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    extra = {}
    if bos:
        core.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
        )
        extra = {"bos_token": "<bos>", "chat_template": CHAT_TEMPLATE}
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>", **extra
    )


def _config(name: str, vocab_size: int):
    from transformers import GPT2Config, LlamaConfig

    if name in ("tiny-llama", "tiny-llama-bos"):
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            pad_token_id=0,
            bos_token_id=None,
            eos_token_id=2,
            attn_implementation="eager",
            initializer_range=_INIT_RANGE,
        )
    return GPT2Config(
        vocab_size=vocab_size,
        n_embd=32,
        n_layer=3,
        n_head=4,
        n_positions=512,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=2,
        attn_implementation="eager",
        initializer_range=_INIT_RANGE,
    )


def build_tiny(name: str) -> FrozenLM:
    """Build ``tiny-llama`` (4 layers x 4 heads), ``tiny-gpt2`` (3 layers x 4 heads) or
    ``tiny-llama-bos`` (``tiny-llama`` whose tokenizer adds BOS and has a chat template)."""
    from transformers import AutoModelForCausalLM

    if name not in TINY_MODELS:
        raise ValueError(f"unknown tiny model {name!r}; choose one of {TINY_MODELS}")
    tokenizer = char_tokenizer(bos=name == "tiny-llama-bos")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = AutoModelForCausalLM.from_config(_config(name, len(tokenizer)))
    return wrap_random(model, tokenizer, name)


def wrap_random(model, tokenizer, name: str, tokenization: bool = False) -> FrozenLM:
    """A randomly initialised ``model`` as a :class:`FrozenLM`: its identity names it and
    hashes its weights; with ``tokenization``, plain text without special tokens is
    recorded as its reading (what :func:`probes.models.load_frozen` adds for tiny models)."""
    from .models import resolve_tokenization

    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().numpy().tobytes())
    identity = {"name_or_path": name, "revision": None, "weights_hash": f"sha256:{h.hexdigest()}"}
    if tokenization:
        identity["tokenization"] = resolve_tokenization(tokenizer, False, "plain")
    return FrozenLM(model, tokenizer, identity, source="random")
