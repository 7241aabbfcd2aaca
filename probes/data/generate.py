"""The ``generate`` builder: the frozen model solves problems itself; label = its answer is
right. This is what a user does with their own model."""

from __future__ import annotations

import re
import sys
import warnings

import torch
from tqdm.auto import tqdm

from ..config import ModelConfig
from .builders import _gym_items, _shuffled, builder
from .records import Record

_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?"
_ANSWER_PATTERNS = [
    re.compile(rf"answer\s*(?:is|:)\s*[:=]?\s*\**\s*({_NUM})", re.IGNORECASE),
    re.compile(rf"####\s*({_NUM})"),
    re.compile(rf"\\boxed\{{\s*({_NUM})\s*\}}"),
]
INSTRUCTION = "Solve it step by step, then finish with 'The answer is <number>.'"
#: Warn below this share for either class: a one-sided set makes AUROC noise.
MIN_CLASS_SHARE = 0.3


def normalize_number(text: str) -> str | None:
    """``"$1,200.50"`` -> ``"1200.5"``; ``"72.0"`` -> ``"72"``; ``None`` if not a number."""
    try:
        value = float(text.replace("$", "").replace(",", "").rstrip("."))
    except ValueError:
        return None
    return str(int(value)) if value.is_integer() else repr(value)


def extract_answer(text: str) -> str | None:
    """The final answer of a solution: the last "answer is N", else "#### N", else
    "\\boxed{N}", else the last number; normalized, or ``None`` when there is none."""
    for pattern in _ANSWER_PATTERNS:
        found = pattern.findall(text)
        if found:
            return normalize_number(found[-1])
    numbers = re.findall(_NUM, text)
    return normalize_number(numbers[-1]) if numbers else None


def _user_turn(question: str) -> str:
    """What the model was asked: the question and the answer instruction."""
    return f"{question}\n{INSTRUCTION}"


def _text_format(tokenizer) -> str:
    return "chat" if getattr(tokenizer, "chat_template", None) else "plain"


def _prompt(tokenizer, question: str) -> str:
    content = _user_turn(question)
    if _text_format(tokenizer) == "chat":
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    return f"Problem: {content}\nSolution:"


def _problems(task: str, seed: int, n: int, terms: int, digits: int) -> list[tuple[str, str, str]]:
    """``(key, question, answer)`` for ``n`` problems."""
    if task == "gsm_symbolic":
        items = _gym_items(task, seed, size=n)
    elif task == "chain_sum":
        cfg = {"min_terms": terms, "max_terms": terms, "min_digits": digits, "max_digits": digits}
        items = _gym_items(task, seed, size=n, **cfg)
    else:
        raise ValueError(f"option 'task': expected gsm_symbolic or chain_sum, got {task!r}")
    return [(str(x["metadata"]["source_index"]), x["question"], str(x["answer"])) for x in items]


@builder("generate")
def build_generate(
    seed: int = 0,
    n: int = 200,
    model: str = "smollm2-135m",
    task: str = "chain_sum",
    terms: int = 2,
    digits: int = 1,
    max_new_tokens: int = 48,
    batch_size: int = 8,
    sample: bool = False,
    progress: bool = True,
    device: str = "auto",
    dtype: str = "float32",
) -> list[Record]:
    """Let ``model`` solve ``n`` problems and label each solution by exact match.

    Args:
        task: ``chain_sum`` (``terms`` numbers of ``digits`` digits; the embedded 135M model
            solves few sums beyond single digits, so the default is 2 single-digit terms) or
            ``gsm_symbolic``.
        sample: sample (seeded) instead of greedy decoding.
        device, dtype: where and in what precision the model generates (``model.device``
            and ``model.dtype``: an experiment passes its own).
    """
    from ..models import load_frozen

    lm = load_frozen(ModelConfig(name_or_path=model, device=device, dtype=dtype))
    tok = lm.tokenizer
    special = lm.identity["tokenization"]["add_special_tokens"] and _text_format(tok) == "plain"
    problems = _problems(task, seed, n, terms, digits)
    records, empty = [], 0
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=len(problems), desc="generate", unit="problem", disable=not progress)
    side = tok.padding_side
    tok.padding_side = "left"  # generation continues from the right end of every row
    try:
        for start in range(0, len(problems), batch_size):
            chunk = problems[start : start + batch_size]
            enc = tok(
                [_prompt(tok, q) for _, q, _ in chunk],
                return_tensors="pt",
                padding=True,
                # As the capture reads it: a chat template holds its own special tokens.
                add_special_tokens=special,
            ).to(lm.device)
            devices = [] if lm.device.type == "cpu" else [lm.device]
            # Seeded sampling without touching the caller's global random state.
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
                out = lm.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=sample,
                    pad_token_id=tok.pad_token_id,
                    **({"top_p": 0.95} if sample else {}),
                )
            texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for (key, question, answer), text in zip(chunk, texts, strict=True):
                solution = text.strip()
                if not solution:
                    empty += 1
                    continue
                got = extract_answer(solution)
                group = f"generate-{task}/{seed}/{key}"
                records.append(
                    Record(
                        id=group,
                        label=int(got == normalize_number(answer)),
                        group=group,
                        source=f"generate-{task}",
                        # The user turn as asked, so that the record is read in the
                        # context the model generated in (meta.text_format).
                        problem=_user_turn(question),
                        solution=solution,
                        meta={
                            "question": question,
                            "text_format": _text_format(tok),
                            "answer": answer,
                            "extracted": got,
                            "model": lm.identity["name_or_path"],
                            "task": task,
                            "terms": terms,
                            "digits": digits,
                        },
                    )
                )
            bar.update(len(chunk))
    finally:
        tok.padding_side = side
        bar.close()
    _report(records, empty)
    return _shuffled(records, seed)


def _report(records: list[Record], empty: int) -> None:
    n_ok = sum(r.label for r in records)
    share = n_ok / max(1, len(records))
    print(
        f"generate: accuracy {n_ok}/{len(records)} = {share:.1%}"
        + (f" ({empty} empty generations left out)" if empty else ""),
        file=sys.stderr,
    )
    if min(share, 1 - share) < MIN_CLASS_SHARE:
        warnings.warn(
            f"one class is under {MIN_CLASS_SHARE:.0%} of the records (accuracy {share:.1%}): "
            "AUROC on such a set is mostly noise; make the problems easier or harder "
            "(options task, terms, digits)",
            stacklevel=2,
        )
