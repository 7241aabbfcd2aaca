"""``probes show``: self-contained HTML pages of a step scorer's view of solutions.

Each record's section shows its solution with every step shaded by P(step wrong) (white at
0, red at 1), the step the scorer flags (ProcessBench's call: the first at its threshold),
the labelled first wrong step where the record says (CHAMP's annotation, gsm-perturb's
corruption), and, for the most suspect step, each layer's share of its logit (the sum of
that layer's ``w_j (x_j - mean_j) / std_j / T`` terms) as an inline SVG curve. No script, no
external file: the page opens offline in any browser. The structure is stable for tools:
every section is ``section.record[data-record][data-labelled-step][data-flagged-step]``
(0-based step indices, or ``none``), every step ``span.step[data-step][data-p-wrong]``, the
labelled one has class ``labelled``, the flagged one ``flagged``, the most suspect one
``top``; the curve is ``svg.layer-curve`` with one ``circle[data-layer][data-value]`` per
layer. The text shows steps 1-based.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text
from .data.records import Record
from .steps import Step, wrong_step

_LAYER = re.compile(r"/L(\d+)(?:/|$)")


@dataclass
class StepView:
    start: int
    end: int
    p_wrong: float  # NaN: not read (cut off by truncation)


@dataclass
class RecordView:
    """What one record's section shows."""

    id: str
    problem: str
    solution: str
    steps: list[StepView]
    p_valid: float
    label: int | None
    labelled: int | None  # the labelled first wrong step
    flagged: int | None  # the scorer's first step at its threshold
    threshold: float
    layers: list[tuple[int, float]] = field(default_factory=list)  # (layer, logit share)

    @property
    def top(self) -> int | None:
        """The most suspect read step."""
        p = np.array([s.p_wrong for s in self.steps], dtype=np.float64)
        return int(np.nanargmax(p)) if np.isfinite(p).any() else None


def layer_curve(names: Sequence[str], contributions: np.ndarray) -> list[tuple[int, float]]:
    """``(layer, sum of that layer's terms)`` for one step's ``contributions (F,)``, in layer
    order; features without a layer (confounds, position) are left out.

    Example:
        >>> layer_curve(["step/a/L01", "step/b/L01", "step/a/L00", "x"], np.array([1, 2, 3, 4]))
        [(0, 3.0), (1, 3.0)]
    """
    by: dict[int, float] = {}
    for name, c in zip(names, contributions, strict=True):
        m = _LAYER.search(name)
        if m:
            by[int(m.group(1))] = by.get(int(m.group(1)), 0.0) + float(c)
    return sorted(by.items())


def record_views(scorer, records: Sequence[Record], batch_size: int = 4, progress=False):
    """One :class:`RecordView` per record, from one pass of the scorer's frozen model."""
    if not scorer.is_step:
        raise ValueError(
            f"probes show needs a step scorer; {scorer.meta['name']!r} is a "
            f"{scorer.meta['kind']} scorer of whole solutions"
        )
    ex = scorer.features(records, batch_size, progress)
    scored = scorer._score_steps(ex)
    names, Xs, _ = scorer.step_inputs(ex)
    views = []
    for i, rec in enumerate(records):
        text, start = rec.full_text, rec.solution_start
        solution = text[start:] if start is not None else ""
        steps = [StepView(s["start"], s["end"], s["p_wrong"]) for s in scored.steps[i]]
        as_steps = [Step(k, s.start, s.end) for k, s in enumerate(steps)]
        view = RecordView(
            id=rec.id,
            problem=text[:start] if start is not None else text,
            solution=solution,
            steps=steps,
            p_valid=float(scored.p_valid[i]),
            label=rec.label,
            labelled=wrong_step(rec, as_steps) if rec.label is not None else None,
            flagged=scored.first_flagged[i],
            threshold=float(scorer.meta["threshold"]),
        )
        top = view.top
        if top is not None:
            contrib = scorer.step_contributions(Xs[i][top : top + 1], names)[0]
            view.layers = layer_curve(scorer.feature_names, contrib)
        views.append(view)
    return views


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
section.record { border-top: 1px solid #ccc; padding: 1rem 0; }
.problem { color: #555; white-space: pre-wrap; margin-bottom: .5rem; }
.solution { white-space: pre-wrap; line-height: 1.9; font-family: ui-monospace, monospace; }
span.step { padding: .1rem .15rem; border-radius: .2rem; }
span.step.labelled { outline: 2px solid #1f5fbf; }
span.step.flagged { border-bottom: 3px solid #b00; }
span.step.unread { color: #999; text-decoration: line-through; }
.badge { font-size: .75rem; padding: 0 .3rem; border-radius: .2rem; margin-left: .2rem; }
.badge.labelled { background: #1f5fbf; color: white; }
.badge.flagged { background: #b00; color: white; }
.legend { font-size: .85rem; color: #555; }
figure.layers { margin: 1rem 0 0; }
figure.layers figcaption { font-size: .85rem; color: #555; }
table.steps { border-collapse: collapse; font-size: .85rem; margin-top: .5rem; }
table.steps td, table.steps th { padding: .1rem .5rem; border-bottom: 1px solid #eee; }
"""


def _shade(p: float) -> str:
    if not math.isfinite(p):
        return "transparent"
    return f"rgba(214, 39, 40, {0.08 + 0.72 * p:.3f})"


def _solution_html(v: RecordView) -> str:
    out, at = [], 0
    top = v.top
    for k, s in enumerate(v.steps):
        out.append(html.escape(v.solution[at : s.start]))
        classes = ["step"]
        if k == v.labelled:
            classes.append("labelled")
        if k == v.flagged:
            classes.append("flagged")
        if k == top:
            classes.append("top")
        read = math.isfinite(s.p_wrong)
        if not read:
            classes.append("unread")
        p_text = f"{s.p_wrong:.3f}" if read else "not read"
        title = f"step {k + 1}: P(wrong) = {p_text}"
        out.append(
            f'<span class="{" ".join(classes)}" data-step="{k}" '
            f'data-p-wrong="{s.p_wrong if read else "nan"}" title="{html.escape(title)}" '
            f'style="background: {_shade(s.p_wrong)}">{html.escape(v.solution[s.start : s.end])}'
            "</span>"
        )
        if k == v.labelled:
            out.append('<span class="badge labelled">labelled first error</span>')
        if k == v.flagged:
            out.append('<span class="badge flagged">flagged</span>')
        at = s.end
    out.append(html.escape(v.solution[at:]))
    return "".join(out)


def _curve_svg(v: RecordView, width: int = 560, height: int = 160) -> str:
    if not v.layers:
        return '<p class="legend">This scorer reads no per-layer step features.</p>'
    xs = [layer for layer, _ in v.layers]
    ys = [c for _, c in v.layers]
    lo, hi = min(min(ys), 0.0), max(max(ys), 0.0)
    span = (hi - lo) or 1.0
    pad = 44
    x_of = lambda x: pad + (x - xs[0]) / max(xs[-1] - xs[0], 1) * (width - 2 * pad)  # noqa: E731
    y_of = lambda y: height - pad - (y - lo) / span * (height - 2 * pad)  # noqa: E731
    points = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in zip(xs, ys, strict=True))
    dots = "".join(
        f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="2.5" data-layer="{x}" '
        f'data-value="{y:.6g}"><title>layer {x}: {y:+.3f}</title></circle>'
        for x, y in zip(xs, ys, strict=True)
    )
    zero = y_of(0.0)
    scale = (
        f'<text x="{pad - 4}" y="{y_of(hi) + 4:.1f}" font-size="11" text-anchor="end">'
        f"{hi:+.2f}</text>"
        f'<text x="{pad - 4}" y="{y_of(lo) + 4:.1f}" font-size="11" text-anchor="end">'
        f"{lo:+.2f}</text>"
    )
    return (
        f'<svg class="layer-curve" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="per-layer logit share of step {v.top + 1}">'
        f'<line x1="{pad}" x2="{width - pad}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#bbb"/>'
        f'<polyline fill="none" stroke="#b00" stroke-width="1.5" points="{points}"/>{dots}{scale}'
        f'<text x="{pad}" y="{height - 8}" font-size="11">layer {xs[0]}</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">'
        f"layer {xs[-1]}</text></svg>"
    )


def _label_text(v: RecordView) -> str:
    if v.label is None:
        return "unlabelled"
    if v.label == 1:
        return "labelled valid"
    if v.labelled is None:
        return "labelled invalid (no step annotation)"
    return f"labelled invalid, first wrong step {v.labelled + 1}"


def section(v: RecordView) -> str:
    """One record's ``<section>``."""
    flagged = "none (all steps correct)" if v.flagged is None else f"step {v.flagged + 1}"
    rows = "".join(
        f"<tr><td>{k + 1}</td><td>{s.p_wrong:.3f}</td></tr>"
        if math.isfinite(s.p_wrong)
        else f"<tr><td>{k + 1}</td><td>not read</td></tr>"
        for k, s in enumerate(v.steps)
    )
    top = "" if v.top is None else f" (step {v.top + 1}, the most suspect)"
    labelled = "none" if v.labelled is None else str(v.labelled)
    flagged_at = "none" if v.flagged is None else str(v.flagged)
    return (
        f'<section class="record" id="record-{html.escape(v.id)}" '
        f'data-record="{html.escape(v.id)}" data-p-valid="{v.p_valid:.6g}" '
        f'data-labelled-step="{labelled}" data-flagged-step="{flagged_at}">'
        f"<h2>{html.escape(v.id)}</h2>"
        f'<p class="legend">P(valid) = {v.p_valid:.3f} · {_label_text(v)} · flagged: {flagged} '
        f"(threshold P(wrong) ≥ {v.threshold:.3f})</p>"
        f'<div class="problem">{html.escape(v.problem)}</div>'
        f'<div class="solution">{_solution_html(v)}</div>'
        f'<figure class="layers">{_curve_svg(v)}<figcaption>Each layer\'s share of the logit '
        f"of P(wrong){top}.</figcaption></figure>"
        f'<table class="steps"><tr><th>step</th><th>P(wrong)</th></tr>{rows}</table>'
        "</section>"
    )


def page(views: Sequence[RecordView], title: str) -> str:
    """A whole HTML document of ``views``."""
    body = "".join(section(v) for v in views)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        '<p class="legend">Steps are shaded by P(step is wrong); the blue outline is the '
        "labelled first error, the red underline the scorer's flag.</p>"
        f"{body}</body></html>\n"
    )


def write_pages(views: Sequence[RecordView], out: str | Path, title: str) -> list[Path]:
    """``out`` ending in ``.html``: one page of every record; else a folder with one page
    per record (``<id>.html``, the id made safe for a file name)."""
    out = Path(out)
    if out.suffix == ".html":
        return [atomic_write_text(out, page(views, title))]
    out.mkdir(parents=True, exist_ok=True)
    paths, used = [], set()
    for v in views:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", v.id) or "record"
        base, n = name, 1
        while name in used:  # two ids that read alike as file names
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        paths.append(atomic_write_text(out / f"{name}.html", page([v], f"{title}: {v.id}")))
    return paths
