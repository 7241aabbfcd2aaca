"""The ``probes`` command line: one entry point for every job, thin over functions that the
tests also call. ``train.py`` and ``evaluate.py`` are ``probes train`` and ``probes
evaluate``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import InspectConfig, load_config, packaged_configs
from .errors import ConfigError, report_errors

#: A worked example: a GSM8K-style problem with a correct step-by-step solution.
WORKED_EXAMPLE = (
    "Problem: Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?\n"
    "Solution: In May, Natalia sold 48 / 2 = 24 clips. In April and May together she sold "
    "48 + 24 = 72 clips. The answer is 72."
)

SUMMARY_FAMILIES = (
    "fiedler",
    "eig_low",
    "eig_entropy",
    "eig_mean",
    "eig_std",
    "lapeig",
    "attn_logdet",
)


def inspect_text(cfg: InspectConfig, text: str) -> str:
    """A per-layer table of the main spectral features of one text under ``cfg``."""
    from .capture import SpectralCapture
    from .models import load_frozen

    lm = load_frozen(cfg.model)
    capture = SpectralCapture(lm, cfg.capture)
    ex = capture.extract([text])
    # One column per family present; per-head and top-k features show their first entry.
    shown = [f for f in SUMMARY_FAMILIES if any(n.startswith(f + "/") for n in ex.names)]
    lines = [
        f"model {lm.identity['name_or_path']} ({lm.source}), {lm.n_layers} layers x "
        f"{lm.n_heads} heads; {int(ex.n_tokens[0])} tokens; Laplacian {cfg.capture.laplacian}, "
        f"heads {cfg.capture.heads}",
        "layer " + " ".join(f"{f:>16}" for f in shown),
    ]
    for layer in capture.layers:
        cells = []
        for fam in shown:
            name = next(n for n in ex.names if n.startswith(f"{fam}/L{layer:02d}"))
            cells.append(f"{float(ex.column(name)[0]):>16.4f}")
        lines.append(f"L{layer:02d}   " + " ".join(cells))
    conf = ", ".join(
        f"{n.split('/')[1]} {float(ex.column(n)[0]):.4g}"
        for n in ex.names
        if n.startswith("confound/")
    )
    lines.append(f"confounds: {conf}")
    return "\n".join(lines)


def _cmd_inspect(args: argparse.Namespace) -> int:
    cfg = load_config(InspectConfig, args.config, args.overrides)
    if _printed(args, cfg):
        return 0
    text = WORKED_EXAMPLE
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    elif args.text:
        text = args.text
    print(inspect_text(cfg, text))
    return 0


def _printed(args: argparse.Namespace, cfg) -> bool:
    """``--print-config``: show the resolved config (file + overrides) as YAML instead."""
    if not getattr(args, "print_config", False):
        return False
    import yaml

    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return True


#: ``probes data build`` flags forwarded to a builder when given (and only if it takes them).
BUILD_OPTIONS = (
    "seed",
    "n",
    "mode",
    "task",
    "terms",
    "digits",
    "model",
    "max_new_tokens",
    "batch_size",
    "device",
    "dtype",
)


def build_dataset(name: str, options: dict, mapping: dict | None = None) -> list:
    """Records from a builder ``name``, or from a file / HF dataset with a column mapping."""
    import inspect

    from .data import BUILDERS, load_records

    if name not in BUILDERS:
        if set(options) - {"seed"}:
            raise ConfigError(
                f"options {sorted(options)} only apply to builders {sorted(BUILDERS)}"
            )
        return load_records(name, mapping)
    fn = BUILDERS[name]
    accepted = inspect.signature(fn).parameters
    bad = sorted(set(options) - set(accepted))
    if bad:
        raise ConfigError(
            f"builder {name!r} takes no option(s) {bad}; it takes: {', '.join(accepted)}"
        )
    return fn(**options)


def _parse_mapping(text: str | None) -> dict | None:
    if not text:
        return None
    pairs = [item.split("=", 1) for item in text.split(",")]
    if any(len(p) != 2 for p in pairs):
        raise ConfigError(f"option '--mapping': expected field=column,..., got {text!r}")
    return {k.strip(): v.strip() for k, v in pairs}


def _cmd_data_build(args: argparse.Namespace) -> int:
    from .atomic import refuse_overwrite
    from .data import BUILDERS, write_jsonl

    if args.name not in BUILDERS:
        refuse_overwrite(args.out, args.name, option="--out")
    options = {k: getattr(args, k) for k in BUILD_OPTIONS if getattr(args, k) is not None}
    records = build_dataset(args.name, options, _parse_mapping(args.mapping))
    path = write_jsonl(records, args.out)
    n_valid = sum(r.label for r in records)
    print(f"wrote {len(records)} records ({n_valid} valid) to {path}")
    return 0


def _cmd_data_describe(args: argparse.Namespace) -> int:
    from .data import load_records
    from .data.describe import describe

    records = load_records(args.path, _parse_mapping(args.mapping))
    tokenizer = None
    if args.model:
        from .models import load_frozen

        tokenizer = load_frozen(args.model).tokenizer
    print(describe(records, tokenizer))
    return 0


def _add_data_parser(sub) -> None:
    data = sub.add_parser("data", help="build and describe labelled record sets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    b = dsub.add_parser(
        "build",
        help="build a dataset (champ, gsm-perturb, arith-perturb, "
        "generate) or import a file / HF dataset, and write JSONL",
    )
    b.add_argument("name", help="builder name, or a .jsonl/.csv/.parquet file or HF dataset")
    b.add_argument("--out", required=True, help="output JSONL path")
    b.add_argument("--seed", type=int, help="random seed (default 0)")
    b.add_argument("--n", type=int, help="problems (pairs for *-perturb builders)")
    b.add_argument("--mode", choices=["propagate", "local"], help="corruption mode")
    b.add_argument(
        "--task", help="arith-perturb: chain_sum|products; generate: chain_sum|gsm_symbolic"
    )
    b.add_argument("--terms", type=int, help="generate: numbers per chain_sum problem")
    b.add_argument("--digits", type=int, help="generate: digits per number")
    b.add_argument("--model", help="generate: the model that solves the problems")
    b.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, help="generate: length")
    b.add_argument("--batch-size", dest="batch_size", type=int, help="generate: batch size")
    _add_device_options(b, "generate: ")
    b.add_argument(
        "--mapping", help="field=column pairs for your own data, e.g. text=response,label=ok"
    )
    b.set_defaults(func=_cmd_data_build)
    d = dsub.add_parser("describe", help="counts, class balance and lengths of a record file")
    d.add_argument("path")
    d.add_argument("--model", help="also report token lengths under this model's tokenizer")
    d.add_argument("--mapping", help="field=column pairs for your own data")
    d.set_defaults(func=_cmd_data_describe)


def _cmd_extract(args: argparse.Namespace) -> int:
    from .config import ExperimentConfig, ExtractConfig
    from .extract import extract

    try:
        cfg = load_config(ExtractConfig, args.config, args.overrides)
    except ConfigError as err:
        try:  # an experiment's config: its extraction part
            cfg = load_config(ExperimentConfig, args.config, args.overrides).extract_config()
        except ConfigError as other:
            # Options only an experiment has: the file is one, and its own error says more.
            raise (other if "known options of ExtractConfig" in str(err) else err) from None
    if _printed(args, cfg):
        return 0
    result = extract(cfg, repair=args.repair)
    if result.is_global_zero:
        print(result.summary())
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import ExperimentConfig
    from .experiment import run_experiment

    cfg = load_config(ExperimentConfig, args.config, args.overrides)
    if _printed(args, cfg):
        return 0
    run_experiment(cfg)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from . import compare, jsonio
    from .evaluation import compare_bundles
    from .experiment import comparison_table

    if args.json:
        from .atomic import refuse_overwrite

        refuse_overwrite(args.json, *(p for p in (args.data, args.store) if p), option="--json")
    result = compare_bundles(
        args.bundles,
        store=args.store,
        data=args.data,
        split=args.split,
        n_boot=args.n_boot,
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
    )
    print(comparison_table(result["scorers"]))
    if result["paired"]:
        print(compare.comparison_rows_table(result["paired"]))
    if args.json:
        jsonio.write_json(args.json, result)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    import numpy as np

    from . import jsonio
    from .atomic import atomic_lines, refuse_overwrite
    from .bundle import Scorer
    from .data import load_records
    from .errors import DataError

    refuse_overwrite(args.output, args.input)
    scorer = Scorer.load(args.scorer, device=args.device, dtype=args.dtype)
    if args.steps and not scorer.is_step:
        raise ConfigError(
            f"--steps: {args.scorer} is a solution scorer ({scorer.meta['kind']}); per-step "
            "output needs a step scorer (an experiment's bundles-steps/<name>, from a store "
            "extracted with capture.steps)"
        )
    problems: list[str] | None = None if args.strict else []
    records = load_records(
        args.input, _parse_mapping(args.mapping), require_label=False, problems=problems
    )
    if scorer.meta["capture"].get("span") == "solution" or scorer.is_step:
        records = _with_solution_span(records, problems)  # a step scorer reads its steps
    for message in problems or []:
        print(f"probes score: skipped {message}", file=sys.stderr)
    if not records:
        bad = f" ({len(problems)} bad records)" if problems else ""
        raise DataError(f"{args.input}: no records to score{bad}")
    result = scorer.score(records, batch_size=args.batch_size, progress=True)
    lines = []
    for i, rec in enumerate(records):
        skipped = bool(result.skipped[i])
        entry = {
            "id": rec.id,
            "p_valid": None if skipped else float(result.p_valid[i]),
            "decision": None if skipped else int(result.decision[i]),
            "n_tokens": int(result.n_tokens[i]),
            "truncated": bool(result.truncated[i]),
            "skipped": skipped,
        }
        if skipped:
            entry["skipped_reason"] = "longer than the bundle's max_tokens"
        if args.steps:
            entry["first_flagged"] = result.first_flagged[i]
            entry["steps"] = [
                {**st, "p_wrong": None if np.isnan(st["p_wrong"]) else st["p_wrong"]}
                for st in result.steps[i]
            ]
        lines.append(jsonio.dumps(entry))
    atomic_lines(args.output, lines)
    n_skip, n_trunc = int(result.skipped.sum()), int(result.truncated.sum())
    print(
        f"scored {len(records) - n_skip} of {len(records)} records "
        f"({len(problems or [])} bad records, {n_trunc} truncated to max_tokens, "
        f"{n_skip} skipped as too long) -> {args.output}"
    )
    return 0


def _with_solution_span(records: list, problems: list[str] | None) -> list:
    """Records a solution-span scorer can read; the others are errors (or, without
    ``--strict``, reported and left out)."""
    from .errors import RecordError

    kept = []
    for rec in records:
        try:
            rec.span_start("solution")
        except RecordError as err:
            if problems is None:
                raise
            problems.append(str(err))
            continue
        kept.append(rec)
    return kept


def _cmd_show(args: argparse.Namespace) -> int:
    from .bundle import Scorer
    from .data import load_records
    from .errors import DataError
    from .show import record_views, write_pages

    scorer = Scorer.load(args.scorer, device=args.device, dtype=args.dtype)
    if not scorer.is_step:
        raise ConfigError(
            f"--scorer: {args.scorer} is a solution scorer ({scorer.meta['kind']}); probes "
            "show needs a step scorer (an experiment's bundles-steps/<name>)"
        )
    problems: list[str] = []
    records = load_records(
        args.input, _parse_mapping(args.mapping), require_label=False, problems=problems
    )
    records = _with_solution_span(records, problems)
    for message in problems:
        print(f"probes show: skipped {message}", file=sys.stderr)
    if args.limit:
        records = records[: args.limit]
    if not records:
        raise DataError(f"{args.input}: no records with a solution to show")
    views = record_views(scorer, records, args.batch_size, progress=True)
    title = f"{scorer.meta['name']} on {args.input}"
    paths = write_pages(views, args.out, title)
    where = paths[0] if len(paths) == 1 else f"{len(paths)} pages in {args.out}"
    print(f"showed {len(records)} records -> {where}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .bundle import Scorer
    from .experiment import resolve_run

    run = resolve_run(args.results)
    folder = run / ("bundles-refit" if args.refit else "bundles")
    source = folder / args.scorer
    if not source.is_dir() and not args.refit and (run / "bundles-steps" / args.scorer).is_dir():
        folder, source = run / "bundles-steps", run / "bundles-steps" / args.scorer
    if not source.is_dir():
        if args.refit and not folder.is_dir():
            raise ConfigError(
                f"{run} holds no refit bundles: run the experiment with eval.refit: true"
            )
        available = sorted(p.name for p in folder.glob("*"))
        raise ConfigError(f"no scorer {args.scorer!r} in {folder}; available: {available}")
    path = Scorer.load(source).save(args.out)
    print(f"exported {args.scorer} from {run} to {path}")
    return 0


def _add_device_options(parser, what: str = "", default_device: str | None = None) -> None:
    """``--device`` and ``--dtype``: where and in what precision the frozen model runs."""
    parser.add_argument(
        "--device",
        default=default_device,
        help=f"{what}where the model runs: auto (a GPU if there is one), cpu, cuda or cuda:N",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help=f"{what}the model's weight precision",
    )


OVERRIDES_HELP = (
    "options to override, as key=value (a dotted path into the config: capture.heads=each, "
    "model.device=cuda, trainer.devices=4, capture.layers=[0,5,10]); values are read as "
    "YAML, and this is the form W&B sweeps pass with ${args_no_hyphens}"
)

EPILOG = """examples:
  probes train --config tiny                          # a packaged config (probes configs)
  probes train --config gsm-perturb capture.heads=each model.device=cuda
  probes train --config my.yaml --print-config        # the resolved options, as YAML
  probes extract --config extract-demo trainer.devices=2 trainer.strategy=ddp
  probes inspect model.name_or_path=HuggingFaceTB/SmolLM2-1.7B --text "2 + 2 = 4"
  probes export --results results/gsm-perturb --scorer spectral_lr --out my-scorer
  probes score --scorer my-scorer --input new.jsonl --output scored.jsonl --device cuda
  probes evaluate --bundles results/gsm-perturb/latest/bundles/* --data other.jsonl

Every option is documented on its field in probes/config.py; the README explains the
results. Errors in your input or options exit 1 with one line saying what to change;
usage errors exit 2."""


def _add_config_options(parser, what: str) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE|NAME",
        help=f"{what} YAML file, or a packaged config's name ({', '.join(packaged_configs())})",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (file plus overrides) as YAML and exit",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDES_HELP)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="probes",
        description="Judge step-by-step math solutions from the spectral geometry of a frozen "
        "LLM's attention: extract features, fit and compare calibrated scorers against "
        "length and log-probability baselines, export them, score new texts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"probes {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    t = sub.add_parser(
        "train",
        help="run a calibration experiment: build data, extract, fit, evaluate, export",
        description="Run a calibration experiment end to end and write results/<name>/ "
        "(metrics, tables, plots, bundles) and a W&B run (offline by default).",
    )
    _add_config_options(t, "an experiment")
    t.set_defaults(func=_cmd_train, config="gsm-perturb")
    e = sub.add_parser(
        "extract",
        help="extract features of a record set into a feature store",
        description="Extract the spectral features and confounds of every record into a "
        "resumable feature store (a rerun extracts only what is missing).",
    )
    _add_config_options(e, "an extraction (or experiment)")
    e.add_argument(
        "--repair",
        action="store_true",
        help="set damaged, foreign or duplicated shards aside (quarantine/) and re-extract "
        "only their records",
    )
    e.set_defaults(func=_cmd_extract)
    p = sub.add_parser("inspect", help="per-layer spectrum summary of one text")
    _add_config_options(p, "a model + capture")
    p.add_argument("--text", help="the text to read (default: a worked GSM8K example)")
    p.add_argument("--file", help="read the text from this file")
    p.set_defaults(func=_cmd_inspect)
    _add_data_parser(sub)
    ev = sub.add_parser(
        "evaluate",
        help="compare exported bundles on a store split or on new data",
        description="Compare scorer bundles side by side, with grouped bootstrap intervals "
        "and, against bundles that read only confounds, paired differences.",
    )
    ev.add_argument("--bundles", nargs="+", required=True, help="scorer bundle folders")
    where = ev.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="a feature store folder")
    where.add_argument("--data", help="a record file (.jsonl/.csv/.parquet) to score")
    ev.add_argument("--split", default="test", choices=["train", "calib", "test"])
    ev.add_argument("--n-boot", dest="n_boot", type=int, default=500)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--batch-size", dest="batch_size", type=int, default=4)
    ev.add_argument("--json", help="write {scorers, paired} here")
    _add_device_options(ev, "with --data: ", default_device="auto")
    ev.set_defaults(func=_cmd_evaluate)
    sc = sub.add_parser("score", help="score new texts with an exported scorer bundle")
    sc.add_argument("--scorer", required=True, help="bundle folder (scorer.json + weights)")
    sc.add_argument(
        "--input",
        required=True,
        help="records (.jsonl/.csv/.parquet or HF dataset): id and text (or problem + "
        "solution); labels optional",
    )
    sc.add_argument(
        "--output",
        required=True,
        help="JSONL: id, p_valid, decision, n_tokens, truncated, skipped (never the input)",
    )
    sc.add_argument("--mapping", help="field=column pairs for your own data")
    sc.add_argument("--batch-size", dest="batch_size", type=int, default=4)
    sc.add_argument("--strict", action="store_true", help="stop at the first bad record")
    sc.add_argument(
        "--steps",
        action="store_true",
        help="with a step scorer: also write each step's character span in the solution and "
        "P(wrong), and first_flagged (the first step at the scorer's threshold, or null)",
    )
    _add_device_options(sc, default_device="auto")
    sc.set_defaults(func=_cmd_score)
    sh = sub.add_parser(
        "show",
        help="HTML pages of a step scorer's view: steps shaded by P(wrong), the labelled "
        "error marked, the per-layer curve of the most suspect step",
    )
    sh.add_argument("--scorer", required=True, help="a step scorer bundle (bundles-steps/...)")
    sh.add_argument("--input", required=True, help="records (.jsonl/.csv/.parquet or HF dataset)")
    sh.add_argument(
        "--out",
        required=True,
        help="a .html file (one page of every record) or a folder (one page per record)",
    )
    sh.add_argument("--mapping", help="field=column pairs for your own data")
    sh.add_argument("--limit", type=int, default=0, help="the first N records only")
    sh.add_argument("--batch-size", dest="batch_size", type=int, default=4)
    _add_device_options(sh, default_device="auto")
    sh.set_defaults(func=_cmd_show)
    ex = sub.add_parser("export", help="copy a finished experiment's scorer bundle elsewhere")
    ex.add_argument(
        "--results",
        required=True,
        help="an experiment's results folder (its latest successful run) or one run folder",
    )
    ex.add_argument(
        "--scorer",
        required=True,
        help="scorer name (e.g. spectral_lr, or a step scorer such as step_spectral)",
    )
    ex.add_argument("--out", required=True, help="destination folder")
    ex.add_argument(
        "--refit",
        action="store_true",
        help="the scorer refit on all records (bundles-refit/, from eval.refit: true) instead "
        "of the one fitted on the single split",
    )
    ex.set_defaults(func=_cmd_export)
    c = sub.add_parser("configs", help="list the packaged configs")
    c.set_defaults(func=_cmd_configs)
    return parser


def _cmd_configs(args: argparse.Namespace) -> int:
    from .config import PACKAGED_CONFIGS

    for name in packaged_configs():
        first = (PACKAGED_CONFIGS / f"{name}.yaml").read_text().splitlines()[0]
        print(f"{name:28s} {first.lstrip('# ')[:70]}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code: 0,
    1 for an error in the input or options (one line on stderr), 2 for a usage error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if prog:
        parser.prog = prog
    if "--set" in argv:
        parser.error("overrides are key=value, without --set (e.g. capture.heads=each n_boot=100)")
    args = parser.parse_args(argv)
    return report_errors(prog or f"probes {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
