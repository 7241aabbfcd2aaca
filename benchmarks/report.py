"""Reproduce ``docs/results.md``: run the report's experiments and write their tables.

    python benchmarks/report.py            # or: make report

Each experiment is ``train.py``'s ``run_experiment`` on a config in ``configs/`` (stores are
reused when they exist); the comparison tables, confound audits and the best (family, layer)
cells are written to ``docs/results.md`` with the plots copied to ``docs/results/``. The
interpretation at the top of the file is written by hand from these numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from probes.compare import comparison_rows_table, nested_table
from probes.config import load_experiment
from probes.experiment import (
    comparison_table,
    fold_table,
    resolve_run,
    run_experiment,
    truncation_line,
)
from probes.stepeval import paired_text, step_table

EXPERIMENTS = (
    "gsm-perturb",
    "gsm-perturb-heads",
    "gsm-perturb-local",
    "gsm-perturb-local-heads",
    "champ",
    "champ-heads",
    "generate",
    "generate-heads",
)
#: Experiments with per-step features: their section is the step localisation (their
#: solution-level tables repeat those of the experiment they are based on).
STEP_EXPERIMENTS = ("gsm-perturb-steps", "gsm-perturb-local-steps", "champ-steps")
MARK = "<!-- generated below by benchmarks/report.py -->"


def step_section(name: str, folder: Path) -> str:
    """The localisation tables of one experiment with per-step features."""
    steps = json.loads((folder / "metrics.json").read_text())["steps"]
    cv = bool(steps.get("folds"))
    lines = [
        f"## {name}",
        "",
        steps["evaluation"].replace("step evaluation: ", "Step localisation, evaluated on: ")
        + ". Each metric with its 95% grouped bootstrap interval; `step_auroc`: the first wrong"
        " step against the correct steps before it; `step_auroc_all`: against those and every"
        " step of the valid solutions; `top1`/`top3` over the invalid solutions;"
        " ProcessBench's F1 at the threshold chosen on each fit's calib split; the solution"
        " AUROC of the aggregated P(valid).",
        "",
        "```",
        step_table(steps["scorers"]),
        "```",
        "",
        "```",
        paired_text(steps["paired"]),
        "```",
        "",
        "ProcessBench's two accuracies (invalid: exactly the labelled step; valid: no flag):",
        "",
        "| scorer | acc invalid | acc valid |",
        "| --- | --- | --- |",
        *[
            f"| {k} | {m['pb_acc_invalid']:.3f} [{m['pb_acc_invalid_lo']:.3f}, "
            f"{m['pb_acc_invalid_hi']:.3f}] | {m['pb_acc_valid']:.3f} "
            f"[{m['pb_acc_valid_lo']:.3f}, {m['pb_acc_valid_hi']:.3f}] |"
            for k, m in steps["scorers"].items()
        ],
        "",
    ]
    if cv:
        lines += [
            "<details><summary>The single split's test records (what the exported step "
            "bundles carry)</summary>",
            "",
            "```",
            step_table(steps["split_scorers"]),
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)


def section(name: str, folder: Path, docs: Path) -> str:
    report = json.loads((folder / "metrics.json").read_text())
    metrics = report["scorers"]
    n = report["n"]
    audit = list(csv.DictReader(open(folder / "confound_audit.csv")))
    layers = sorted(
        csv.DictReader(open(folder / "layer_auroc.csv")), key=lambda r: -float(r["test_auroc"])
    )
    images = docs / "results"
    images.mkdir(parents=True, exist_ok=True)
    for plot in ("layer_auroc", "reliability", "roc"):
        shutil.copy(folder / f"{plot}.png", images / f"{name}-{plot}.png")
    chosen = ", ".join(
        f"`{k}` (wd {m['weight_decay']:g}"
        + (f", T {m['temperature']:.2f})" if "temperature" in m else ")")
        for k, m in metrics.items()
        if "weight_decay" in m
    )
    evaluation = report.get("evaluation", {"mode": "split", "text": "evaluation: the test split"})
    cv = evaluation["mode"] == "cv"
    lines = [
        f"## {name}",
        "",
        f"{evaluation['text'].replace('evaluation: ', 'Evaluated on: ')}. Single split "
        f"train / calib / test: {n['train']} / {n['calib']} / {n['test']} records"
        f" ({n['skipped']} skipped as too long). Threshold feature"
        f"{' (most often chosen across folds)' if cv else ''}: "
        f"`{metrics['threshold'].get('feature')}`.",
        "",
        *([truncation_line(report["truncation"]) + ".", ""] if "truncation" in report else []),
        "```",
        comparison_table(metrics),
        "```",
        "",
        *(
            [
                f"Across the {evaluation['folds']} folds (each fold's own test part):",
                "",
                "```",
                fold_table(metrics),
                "```",
                "",
            ]
            if cv
            else []
        ),
        *([f"Headline: {report['headline_text']}.", ""] if "headline_text" in report else []),
        *(
            [
                "Paired differences (same records, grouped bootstrap, DeLong p):",
                "",
                "```",
                comparison_rows_table(report["paired"]),
                "```",
                "",
            ]
            if report.get("paired")
            else []
        ),
        *(
            [
                "Nested: spectra and confounds together against the confounds alone (log-loss: "
                "negative when the spectra help):",
                "",
                "```",
                nested_table(report["nested"]),
                "```",
                "",
            ]
            if report.get("nested")
            else []
        ),
        *(
            [
                "<details><summary>The single split's test records (what the exported bundles "
                "carry)</summary>",
                "",
                "```",
                comparison_table(report["split_scorers"]),
                "```",
                "",
                "</details>",
                "",
            ]
            if cv
            else []
        ),
        *(
            [
                f"Chosen {'most often across folds' if cv else 'on calib'} for the logistic "
                f"scorers: {chosen}.",
                "",
            ]
            if chosen
            else []
        ),
        "Confound audit on the single split (test AUROC of the calib-chosen feature, raw and",
        "with length and log-probability regressed out on train):",
        "",
        "| family | raw | residual |",
        "| --- | --- | --- |",
        *[
            "| {} | {:.3f} | {:.3f} |".format(
                r["family"], float(r["raw_test_auroc"]), float(r["residual_test_auroc"])
            )
            for r in audit
        ],
        "",
        f"Highest (family, layer) cells on the single split's test records, direction chosen on "
        f"calib (the largest of "
        f"{sum(r['layer'] != '-' for r in layers)} cells on the test split: optimistic by "
        "construction, a place to look rather than a result): "
        + ", ".join(
            f"`{r['feature']}` {float(r['test_auroc']):.3f}"
            for r in layers[:5]
            if r["layer"] != "-"
        ),
        "",
        f"![AUROC by family and layer](results/{name}-layer_auroc.png)",
        f"![reliability](results/{name}-reliability.png)",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--experiments",
        nargs="+",
        default=[*EXPERIMENTS, *STEP_EXPERIMENTS],
        help="the sections to (re)generate; the others already in the report are kept",
    )
    parser.add_argument("--out", default="docs/results.md")
    parser.add_argument(
        "--no-run", action="store_true", help="only rewrite the report from results/ as it is"
    )
    args = parser.parse_args()
    out = Path(args.out)
    head, kept = "# Results\n\n", {}
    if out.exists():
        head, _, generated = out.read_text().partition(MARK)
        kept = split_sections(generated)
    for name in args.experiments:
        cfg = load_experiment(Path("configs") / f"{name}.yaml")
        root = Path(cfg.results_dir) / cfg.name
        if not args.no_run:
            run_experiment(cfg)
        elif not (root / "latest" / "metrics.json").is_file():
            raise SystemExit(f"{root} holds no successful run: run without --no-run first")
        folder = resolve_run(root)
        is_steps = name in STEP_EXPERIMENTS
        kept[name] = step_section(name, folder) if is_steps else section(name, folder, out.parent)
    order = [*EXPERIMENTS, *STEP_EXPERIMENTS]
    names = sorted(kept, key=lambda n: order.index(n) if n in order else len(order))
    out.write_text(head + MARK + "\n\n" + "\n".join(kept[n].rstrip("\n") + "\n" for n in names))
    print(f"wrote {out}")


def split_sections(generated: str) -> dict[str, str]:
    """The generated part of the report, by section (``## <name>`` up to the next)."""
    out, name, lines = {}, None, []
    for line in generated.splitlines():
        if line.startswith("## "):
            if name is not None:
                out[name] = "\n".join(lines) + "\n"
            name, lines = line[3:].strip(), [line]
        elif name is not None:
            lines.append(line)
    if name is not None:
        out[name] = "\n".join(lines) + "\n"
    return out


if __name__ == "__main__":
    main()
