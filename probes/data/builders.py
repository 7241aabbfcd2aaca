"""Dataset builders: labelled math reasoning from packages we can have offline.

Each builder is a function ``build(seed=..., **options) -> list[Record]``, deterministic for
a seed, found in :data:`BUILDERS` by name. Record order is shuffled by the seed as well.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterator

from .corrupt import NoCorruptibleStep, corrupt
from .records import Record

BuilderFn = Callable[..., list[Record]]
BUILDERS: dict[str, BuilderFn] = {}


def builder(name: str) -> Callable[[BuilderFn], BuilderFn]:
    def register(fn: BuilderFn) -> BuilderFn:
        BUILDERS[name] = fn
        return fn

    return register


def _shuffled(records: list[Record], seed: int) -> list[Record]:
    random.Random(f"order-{seed}").shuffle(records)
    return records


@builder("champ")
def build_champ(seed: int = 0) -> list[Record]:
    """CHAMP (package ``champ-dataset``, MIT): 540 model-written solutions to 270 competition
    problems with a human first-wrong-step annotation; label 1 for "no mistake".

    The records are fixed by the data; the seed only sets their order.
    """
    try:
        import champ_dataset
    except ImportError as err:
        raise ImportError(
            "the 'champ' builder needs the package: pip install champ-dataset"
        ) from err
    data = champ_dataset.load("v0")
    records = []
    for pid, problem in data.problems.items():
        for key, ann in sorted((problem.fws_annotations or {}).items()):
            model, _, prompt = key.partition("|")
            wrong = None if ann.start_idx is None else {"start": ann.start_idx, "end": ann.end_idx}
            records.append(
                Record(
                    id=f"champ/{pid}/{key}",
                    label=int(ann.start_idx is None),
                    group=f"champ/{pid}",
                    source="champ",
                    problem=problem.text,
                    solution=ann.text,
                    meta={
                        "problem_id": pid,
                        "category": problem.category,
                        "model": model,
                        "prompt": prompt,
                        "answer": problem.answer,
                        "first_wrong_step": wrong,
                    },
                )
            )
    return _shuffled(records, seed)


_INSTRUCTION = re.compile(r"\s*Give the result as your final answer\. Do not include units\.\s*$")


def _gym_items(task: str, seed: int, size: int, **config) -> Iterator[dict]:
    try:
        import reasoning_gym
    except ImportError as err:
        raise ImportError("this builder needs the package: pip install reasoning-gym") from err
    # reasoning-gym draws item i from seed + i, so seeds 1 and 2 would share all but one
    # item: hash our seed into a distant one.
    gym_seed = int(hashlib.sha256(f"{task}-{seed}".encode()).hexdigest()[:8], 16)
    yield from reasoning_gym.create_dataset(task, seed=gym_seed, size=size, **config)


def _pairs(
    items: Iterator[tuple[str, str, str, str, dict]], n: int, mode: str, seed: int, source: str
) -> list[Record]:
    """Valid/invalid twins from ``(key, problem, solution, answer, meta)`` items.

    Items whose solution has no corruptible step are skipped (deterministically).
    """
    records: list[Record] = []
    for key, problem, solution, answer, meta in items:
        if len(records) >= 2 * n:
            break
        rng = random.Random(f"{seed}-{key}-{mode}")
        try:
            bad = corrupt(solution, mode, rng, final_answer=answer, avoid=problem)
        except NoCorruptibleStep:
            continue
        group = f"{source}/{seed}/{key}"
        common = {"group": group, "source": source, "problem": problem}
        records.append(
            Record(
                id=f"{group}/valid",
                label=1,
                solution=solution,
                meta={**meta, "answer": answer},
                **common,
            )
        )
        records.append(
            Record(
                id=f"{group}/invalid-{mode}",
                label=0,
                solution=bad.text,
                meta={**meta, "answer": answer, "corruption": bad.meta()},
                **common,
            )
        )
    if len(records) < 2 * n:
        raise ValueError(f"only {len(records) // 2} of the {n} requested pairs could be built")
    return _shuffled(records, seed)


@builder("gsm-perturb")
def build_gsm_perturb(seed: int = 0, n: int = 200, mode: str = "propagate") -> list[Record]:
    """reasoning-gym ``gsm_symbolic`` (Apache-2.0): ``n`` problems, each as a valid solution
    and the same solution with one intermediate result corrupted (``mode``: ``propagate`` or
    ``local``). Twins share a group; classes are balanced."""

    def items():
        # About half of the generated solutions have a corruptible step: ask for enough.
        for x in _gym_items("gsm_symbolic", seed, size=4 * n + 20):
            md = x["metadata"]
            problem = _INSTRUCTION.sub("", x["question"])
            yield str(md["source_index"]), problem, md["answer_cot"], str(x["answer"]), {}

    return _pairs(items(), n, mode, seed, "gsm-perturb")


def chain_sum_steps(expression: str) -> str | None:
    """Left-to-right running totals of ``a + b - c ...``; ``None`` if a total goes negative
    (signed intermediate results are not corrupted reliably)."""
    tokens = expression.split()
    total = int(tokens[0])
    lines = []
    for op, term in zip(tokens[1::2], tokens[2::2], strict=True):
        new = total + int(term) if op == "+" else total - int(term)
        if new < 0:
            return None
        lines.append(f"{total} {op} {term} = {new}")
        total = new
    return "\n".join(lines + [f"The answer is {total}."])


def product_steps(expression: str) -> str:
    """Long multiplication ``a * b``: one partial product per non-zero digit of ``b``, then
    running sums."""
    a, b = (int(t) for t in expression.split("*"))
    digits = str(b)
    parts = [(int(d) * 10 ** (len(digits) - 1 - i)) for i, d in enumerate(digits) if d != "0"] or [
        0
    ]
    lines = [f"{a} * {p} = {a * p}" for p in parts]
    total = a * parts[0]
    for p in parts[1:]:
        lines.append(f"{total} + {a * p} = {total + a * p}")
        total += a * p
    return "\n".join(lines + [f"The answer is {total}."])


ARITH_TASKS = {"chain_sum": chain_sum_steps, "products": product_steps}


@builder("arith-perturb")
def build_arith_perturb(
    seed: int = 0, n: int = 200, mode: str = "propagate", task: str = "chain_sum"
) -> list[Record]:
    """reasoning-gym arithmetic (``chain_sum`` or ``products``) with solution steps written
    here (running totals / long multiplication), corrupted as in ``gsm-perturb``."""
    if task not in ARITH_TASKS:
        raise ValueError(f"option 'task': expected one of {list(ARITH_TASKS)}, got {task!r}")
    write = ARITH_TASKS[task]
    config = {"min_terms": 3, "max_terms": 5} if task == "chain_sum" else {}

    def items():
        for x in _gym_items(task, seed, size=6 * n + 20, **config):
            md = x["metadata"]
            steps = write(md["expression"])
            if steps is not None:
                meta = {"task": task, "expression": md["expression"]}
                yield str(md["source_index"]), x["question"], steps, str(x["answer"]), meta

    return _pairs(items(), n, mode, seed, f"arith-perturb-{task}")
