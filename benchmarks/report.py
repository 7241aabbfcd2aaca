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
MARK = "<!-- generated below by benchmarks/report.py -->"


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
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS))
    parser.add_argument("--out", default="docs/results.md")
    parser.add_argument(
        "--no-run", action="store_true", help="only rewrite the report from results/ as it is"
    )
    args = parser.parse_args()
    out = Path(args.out)
    sections = []
    for name in args.experiments:
        cfg = load_experiment(Path("configs") / f"{name}.yaml")
        root = Path(cfg.results_dir) / cfg.name
        if not args.no_run:
            run_experiment(cfg)
        elif not (root / "latest" / "metrics.json").is_file():
            raise SystemExit(f"{root} holds no successful run: run without --no-run first")
        sections.append(section(name, resolve_run(root), out.parent))
    head = out.read_text().split(MARK)[0] if out.exists() else "# Results\n\n"
    out.write_text(head + MARK + "\n\n" + "\n".join(sections))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
