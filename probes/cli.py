"""The ``probes`` console script: thin argument parsing over functions that tests also call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import CaptureConfig, InspectConfig, ModelConfig, from_dict, load_yaml
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
    cfg = load_yaml(args.config, InspectConfig) if args.config else InspectConfig()
    model = cfg.model.to_dict()
    capture = cfg.capture.to_dict()
    if args.model:
        model["name_or_path"] = args.model
    for key in ("device", "dtype"):
        if getattr(args, key):
            model[key] = getattr(args, key)
    if args.layers:
        capture["layers"] = [int(x) for x in args.layers.split(",")]
    if args.heads:
        capture["heads"] = args.heads
    cfg = InspectConfig(
        from_dict(ModelConfig, model, "model"), from_dict(CaptureConfig, capture, "capture")
    )
    text = WORKED_EXAMPLE
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    elif args.text:
        text = args.text
    print(inspect_text(cfg, text))
    return 0


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
    from .config import ExtractConfig
    from .extract import extract

    cfg = load_yaml(args.config, ExtractConfig) if args.config else ExtractConfig()
    raw = cfg.to_dict()
    overrides = {
        ("data", "source"): args.data,
        ("model", "name_or_path"): args.model,
        ("store",): args.store,
        ("batch_size",): args.batch_size,
        ("shard_size",): args.shard_size,
        ("trainer", "devices"): _devices(args.devices),
        ("trainer", "num_nodes"): args.num_nodes,
        ("trainer", "strategy"): args.strategy,
        ("model", "device"): args.device,
        ("model", "dtype"): args.dtype,
        ("capture", "layers"): [int(x) for x in args.layers.split(",")] if args.layers else None,
        ("capture", "heads"): args.heads,
    }
    for keys, value in overrides.items():
        if value is not None:
            target = raw
            for k in keys[:-1]:
                target = target[k]
            target[keys[-1]] = value
    cfg = from_dict(ExtractConfig, raw)
    result = extract(cfg, repair=args.repair)
    if result.is_global_zero:
        print(result.summary())
    return 0


def _devices(text: str | None) -> int | str | None:
    """``--devices``: ``auto`` or a number."""
    if text is None or text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"option '--devices': expected a number or auto, got {text!r}") from None


def _cmd_score(args: argparse.Namespace) -> int:
    from . import jsonio
    from .atomic import atomic_lines, refuse_overwrite
    from .bundle import Scorer
    from .data import load_records
    from .errors import DataError

    refuse_overwrite(args.output, args.input)
    scorer = Scorer.load(args.scorer, device=args.device, dtype=args.dtype)
    problems: list[str] | None = None if args.strict else []
    records = load_records(
        args.input, _parse_mapping(args.mapping), require_label=False, problems=problems
    )
    if scorer.meta["capture"].get("span") == "solution":
        records = _with_solution_span(records, problems)
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


def _cmd_export(args: argparse.Namespace) -> int:
    from .bundle import Scorer
    from .experiment import resolve_run

    run = resolve_run(args.results)
    folder = run / ("bundles-refit" if args.refit else "bundles")
    source = folder / args.scorer
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="per-layer spectrum summary of one text")
    p.add_argument("--config", help="YAML with 'model' and 'capture' sections")
    p.add_argument("--model", help="embedded name, hub id or local folder (default smollm2-135m)")
    p.add_argument("--text", help="the text to read (default: a worked GSM8K example)")
    p.add_argument("--file", help="read the text from this file")
    p.add_argument("--layers", help="comma-separated layer indices (default: all)")
    p.add_argument("--heads", choices=["mean", "each"], help="head aggregation")
    _add_device_options(p)
    p.set_defaults(func=_cmd_inspect)
    _add_data_parser(sub)
    e = sub.add_parser("extract", help="extract features of a record set into a feature store")
    e.add_argument("--config", help="YAML with data, model, capture, trainer sections")
    e.add_argument("--data", help="record file (.jsonl/.csv/.parquet) or HF dataset name")
    e.add_argument("--model", help="embedded name, hub id or local folder")
    e.add_argument("--store", help="store folder (default: stores/<data>-<hash>)")
    e.add_argument("--batch-size", dest="batch_size", type=int, help="texts per forward pass")
    e.add_argument("--shard-size", dest="shard_size", type=int, help="records per shard file")
    e.add_argument("--layers", help="comma-separated layer indices (default: all)")
    e.add_argument("--heads", choices=["mean", "each"], help="head aggregation")
    _add_device_options(e)
    e.add_argument("--devices", help="processes (one GPU each under CUDA) per node, or auto")
    e.add_argument("--num-nodes", dest="num_nodes", type=int, help="nodes")
    e.add_argument("--strategy", help="auto, or ddp for several processes")
    e.add_argument(
        "--repair",
        action="store_true",
        help="set damaged, foreign or duplicated shards aside (quarantine/) and re-extract "
        "only their records",
    )
    e.set_defaults(func=_cmd_extract)
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
    _add_device_options(sc, default_device="auto")
    sc.set_defaults(func=_cmd_score)
    ex = sub.add_parser("export", help="copy a finished experiment's scorer bundle elsewhere")
    ex.add_argument(
        "--results",
        required=True,
        help="an experiment's results folder (its latest successful run) or one run folder",
    )
    ex.add_argument("--scorer", required=True, help="scorer name (e.g. spectral_lr)")
    ex.add_argument("--out", required=True, help="destination folder")
    ex.add_argument(
        "--refit",
        action="store_true",
        help="the scorer refit on all records (bundles-refit/, from eval.refit: true) instead "
        "of the one fitted on the single split",
    )
    ex.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(f"probes {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
