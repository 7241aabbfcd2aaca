"""Corrupt one intermediate result of a step-by-step solution.

A step is an equation ``<arithmetic> = <number>`` whose left side evaluates to the right side.
One step's result ``v`` is replaced by a plausible wrong value ``v'`` (same number of digits
where possible, never ``v``):

* ``local``: only that result changes; later steps still use ``v`` and so contradict it.
* ``propagate``: ``v'`` is carried on: every later mention of ``v`` becomes ``v'`` and every
  later step whose left side changed is re-evaluated, down to the final answer, so the text
  stays internally consistent after the error.

Every edit is recorded as ``(start, old, new)`` on the ORIGINAL text, so the valid text can
be rebuilt from the corrupted one and the edits checked (the tests do).
"""

from __future__ import annotations

import ast
import operator
import random
import re
from dataclasses import dataclass, field

# A number: plain, or with thousands separators ("410,000"); money signs are allowed before.
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
# An operator: + - * / × ÷, or a spaced-out "x" as GSM8K writes products ("28 x 4").
_OP = r"(?:\s*[-+*/×÷]\s*|\s+x\s+)"
# A left side: numbers joined by operators (at least one), brackets allowed.
_EQUATION = re.compile(
    rf"(?P<lhs>\(*\$?{_NUM}(?:\)*{_OP}\(*\$?{_NUM})+\)*)\s*=\s*\$?(?P<rhs>-?{_NUM})"
)
_NUMBER = re.compile(rf"(?<![\d.,]){_NUM}(?![\d]|[.,]\d)")
_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class NoCorruptibleStep(ValueError):
    """The solution has no step whose result can be corrupted in the requested mode."""


@dataclass(frozen=True)
class Step:
    """An equation in the text: character spans of its sides and its values."""

    lhs_span: tuple[int, int]
    rhs_span: tuple[int, int]
    lhs: str
    rhs: str


@dataclass
class Corruption:
    """The corrupted text and what changed (edits on the original text's offsets)."""

    text: str
    mode: str
    step: int
    original: str
    corrupted: str
    edits: list[tuple[int, str, str]] = field(default_factory=list)

    def meta(self) -> dict:
        return {
            "mode": self.mode,
            "step": self.step,
            "original_value": self.original,
            "corrupted_value": self.corrupted,
            "edits": [{"start": s, "old": o, "new": n} for s, o, n in self.edits],
        }


def safe_eval(expr: str) -> float:
    """Evaluate ``+ - * / × ÷`` arithmetic on numbers; anything else raises ``ValueError``."""
    expr = re.sub(r"\s+x\s+", " * ", expr).replace("×", "*").replace("÷", "/")
    expr = expr.replace("$", "").replace(",", "")
    tree = ast.parse(expr.strip(), mode="eval")

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError(f"not plain arithmetic: {expr!r}")

    try:
        return ev(tree)
    except ZeroDivisionError as err:
        raise ValueError(f"division by zero in {expr!r}") from err


def fmt(value: float, like: str = "") -> str:
    """``value`` written as ``like`` is (``776.0`` keeps one decimal); integers without a
    point; other values to at most 2 decimals."""
    sep = "," if "," in like else ""
    if "." in like:
        return f"{value:{sep}.{len(like.split('.')[1])}f}"
    if sep and abs(value - round(value)) < 1e-9:
        return f"{int(round(value)):,}"
    if abs(value - round(value)) < 1e-9:
        return str(int(round(value)))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def find_steps(text: str) -> list[Step]:
    """Equations whose left side evaluates to the right side (to 1e-6 relative)."""
    steps = []
    for m in _EQUATION.finditer(text):
        try:
            value = safe_eval(m["lhs"])
        except (ValueError, SyntaxError):
            continue
        rhs = float(m["rhs"].replace(",", ""))
        if abs(value - rhs) <= 1e-6 * max(1.0, abs(rhs)):
            steps.append(Step(m.span("lhs"), m.span("rhs"), m["lhs"], m["rhs"]))
    return steps


def plausible_wrong(value: str, rng: random.Random) -> str:
    """A different value of the same form: same digit count where possible, same sign."""
    if "," in value:
        return fmt(float(plausible_wrong(value.replace(",", ""), rng)), like=value)
    if "." in value:
        whole, frac = value.split(".")
        scaled = int(whole + frac)
        return _with_point(plausible_wrong(str(scaled), rng).zfill(len(whole + frac)), len(frac))
    v = int(value)
    spread = max(2, abs(v) // 5)
    for _ in range(100):  # rejection sampling: the range can be huge, never enumerate it
        d = rng.randint(-spread, spread)
        w = v + d
        if d != 0 and len(str(abs(w))) == len(str(abs(v))) and (w >= 0) == (v >= 0):
            return str(w)
    return str(v + 1)


def _with_point(digits: str, n_frac: int) -> str:
    whole = digits[:-n_frac].lstrip("0") or "0"
    return f"{whole}.{digits[-n_frac:]}"


def _value(token: str) -> float:
    return float(token.replace(",", ""))


def _mentions(text: str, value: str, start: int, end: int | None = None) -> list[tuple[int, str]]:
    """``(offset, token)`` of every number in ``text[start:end]`` equal to ``value``
    (numerically: ``30.0`` mentions ``30``)."""
    v = _value(value)
    end = len(text) if end is None else end
    return [
        (m.start(), m.group()) for m in _NUMBER.finditer(text, start, end) if _value(m.group()) == v
    ]


def corrupt(
    text: str, mode: str, rng: random.Random, final_answer: str | None = None, avoid: str = ""
) -> Corruption:
    """Corrupt one step of ``text``.

    Args:
        text: a step-by-step solution.
        mode: ``local`` or ``propagate``.
        rng: the seeded random source (the choice of step and of the wrong value).
        final_answer: the true final answer; under ``propagate`` a step is only chosen if its
            corruption changes the last mention of this answer.
        avoid: text (e.g. the problem) whose numbers must not equal the corrupted result, so
            that carrying ``v'`` on never rewrites a given quantity.

    Raises:
        NoCorruptibleStep: no step qualifies.
    """
    if mode not in ("local", "propagate"):
        raise ValueError(f"unknown corruption mode {mode!r}; choose local or propagate")
    steps = find_steps(text)
    given = {_value(t) for t in _NUMBER.findall(avoid)}
    order = list(range(len(steps)))
    rng.shuffle(order)
    for i in order:
        step = steps[i]
        # A result first introduced by this step (or stated earlier on its own line, as in
        # "spent 776.0 because 800 * 0.97 = 776.0"): earlier mentions are another quantity.
        line_start = text.rfind("\n", 0, step.rhs_span[0]) + 1
        if _value(step.rhs) in given or _mentions(text, step.rhs, 0, line_start):
            continue
        if _mentions(step.lhs, step.rhs, 0):  # "12 / 1 = 12": the result is also an input
            continue
        if any(_value(o.rhs) == _value(step.rhs) for o in steps if o is not step):
            continue  # two steps give this value (two equal fees): which one is wrong?
        if mode == "local" and not _mentions(text, step.rhs, step.rhs_span[1]):
            continue  # nothing later uses the value: no contradiction to see
        wrong = plausible_wrong(step.rhs, rng)
        same_line = [
            (pos, tok, fmt(_value(wrong), like=tok))
            for pos, tok in _mentions(text, step.rhs, line_start, step.lhs_span[0])
        ]
        if mode == "local":
            edits = [*same_line, (step.rhs_span[0], step.rhs, wrong)]
        else:
            try:
                edits = sorted(_propagate(text, steps, i, wrong) + same_line)
            except (NoCorruptibleStep, ValueError):
                continue
            if final_answer is not None and not _changes_answer(text, edits, final_answer):
                continue
        return Corruption(_apply(text, edits), mode, i, step.rhs, wrong, edits)
    raise NoCorruptibleStep(f"no corruptible step ({len(steps)} equations) in mode {mode!r}")


def _propagate(text: str, steps: list[Step], i: int, wrong: str) -> list[tuple[int, str, str]]:
    """Edits that carry ``steps[i]``'s new value through later steps and mentions.

    ``changed`` maps an old value to its new value and the offset where the new value was
    produced: a mention is rewritten only after that point (an earlier "3" is another 3).
    """
    changed: dict[float, tuple[float, int]] = {
        _value(steps[i].rhs): (_value(wrong), steps[i].rhs_span[1])
    }
    edits = {steps[i].rhs_span[0]: (steps[i].rhs, wrong)}
    for step in steps[i + 1 :]:
        lhs_edits = []
        for m in _NUMBER.finditer(step.lhs):
            new = changed.get(_value(m.group()))
            if new is not None and new[1] <= step.lhs_span[0]:
                lhs_edits.append(
                    (step.lhs_span[0] + m.start(), m.group(), fmt(new[0], like=m.group()))
                )
        if not lhs_edits:
            continue
        for pos, old, new in lhs_edits:
            edits[pos] = (old, new)
        value = safe_eval(_apply(step.lhs, [(p - step.lhs_span[0], o, n) for p, o, n in lhs_edits]))
        new_rhs = fmt(value, like=step.rhs)
        if (value < 0) != (_value(step.rhs) < 0):
            raise NoCorruptibleStep(f"{step.lhs} changes sign: signed results are not parsed")
        if abs(_value(new_rhs) - value) > 1e-9:
            # Not exact in the step's own format (574 pretzels -> 469.11...): rounding would
            # leave a second wrong step, so this corruption is not used.
            raise NoCorruptibleStep(f"{step.lhs} -> {value} does not fit the form of {step.rhs}")
        if new_rhs != step.rhs:
            edits[step.rhs_span[0]] = (step.rhs, new_rhs)
            changed.setdefault(_value(step.rhs), (value, step.rhs_span[1]))
    # Plain mentions after each value was produced ("...so he has 72 clips", "#### 72.0").
    for old, (new, since) in changed.items():
        for pos, tok in _mentions(text, fmt(old), since):
            edits.setdefault(pos, (tok, fmt(new, like=tok)))
    return sorted((pos, old, new) for pos, (old, new) in edits.items())


def _changes_answer(text: str, edits: list[tuple[int, str, str]], answer: str) -> bool:
    last = _mentions(text, answer, 0)
    return bool(last) and any(pos == last[-1][0] for pos, _, _ in edits)


def _apply(text: str, edits: list[tuple[int, str, str]]) -> str:
    """Apply ``(start, old, new)`` edits (on ``text``'s offsets), checking each ``old``."""
    out, cursor = [], 0
    for pos, old, new in sorted(edits):
        if text[pos : pos + len(old)] != old or pos < cursor:
            raise AssertionError(f"edit {old!r}->{new!r} at {pos} does not match the text")
        out += [text[cursor:pos], new]
        cursor = pos + len(old)
    out.append(text[cursor:])
    return "".join(out)


def revert(corrupted: str, edits: list[tuple[int, str, str]]) -> str:
    """Rebuild the original text from a corrupted one and its edits."""
    shift, inverse = 0, []
    for pos, old, new in sorted(edits):
        inverse.append((pos + shift, new, old))
        shift += len(new) - len(old)
    return _apply(corrupted, inverse)
