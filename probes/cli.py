"""The ``probes`` console script: thin argument parsing over functions that tests also call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .capture import NonFiniteAttentionError
from .config import CaptureConfig, InspectConfig, ModelConfig, from_dict, load_yaml
from .models import AttentionUnavailableError, ModelPackageMissingError

#: A worked example: a GSM8K-style problem with a correct step-by-step solution.
WORKED_EXAMPLE = (
    "Problem: Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?\n"
    "Solution: In May, Natalia sold 48 / 2 = 24 clips. In April and May together she sold "
    "48 + 24 = 72 clips. The answer is 72."
)

SUMMARY_FAMILIES = (
    "fiedler",
    "gap",
    "spectral_entropy",
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
)


def build_dataset(name: str, options: dict, mapping: dict | None = None) -> list:
    """Records from a builder ``name``, or from a file / HF dataset with a column mapping."""
    import inspect

    from .data import BUILDERS, load_records

    if name not in BUILDERS:
        if set(options) - {"seed"}:
            raise ValueError(f"options {sorted(options)} only apply to builders {sorted(BUILDERS)}")
        return load_records(name, mapping)
    fn = BUILDERS[name]
    accepted = inspect.signature(fn).parameters
    bad = sorted(set(options) - set(accepted))
    if bad:
        raise ValueError(
            f"builder {name!r} takes no option(s) {bad}; it takes: {', '.join(accepted)}"
        )
    return fn(**options)


def _parse_mapping(text: str | None) -> dict | None:
    if not text:
        return None
    pairs = [item.split("=", 1) for item in text.split(",")]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"option '--mapping': expected field=column,..., got {text!r}")
    return {k.strip(): v.strip() for k, v in pairs}


def _cmd_data_build(args: argparse.Namespace) -> int:
    from .data import write_jsonl

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
        ("trainer", "devices"): args.devices,
        ("trainer", "num_nodes"): args.num_nodes,
        ("trainer", "strategy"): args.strategy,
        ("trainer", "accelerator"): args.accelerator,
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
    result = extract(cfg)
    if result.is_global_zero:
        print(result.summary())
    return 0


def read_score_input(path: str, strict: bool) -> tuple[list[dict], list[str]]:
    """Records to score (``id`` plus ``text`` or ``problem`` + ``solution``) and one message
    per bad line; with ``strict`` the first bad line raises."""
    import json

    from .data.records import PROBLEM_PREFIX, SOLUTION_MARKER

    rows, problems, seen = [], [], set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                if not isinstance(raw, dict):
                    raise ValueError("expected a JSON object")
                rid = raw.get("id")
                if rid is None or str(rid) in seen:
                    raise ValueError("field 'id' is missing or duplicate")
                if isinstance(raw.get("text"), str) and raw["text"].strip():
                    text, start = raw["text"], 0
                elif all(
                    isinstance(raw.get(k), str) and raw[k].strip() for k in ("problem", "solution")
                ):
                    text = f"{PROBLEM_PREFIX}{raw['problem']}{SOLUTION_MARKER}{raw['solution']}"
                    start = len(text) - len(raw["solution"])
                else:
                    raise ValueError("field 'text' (or 'problem' + 'solution') is missing or empty")
            except ValueError as err:  # json.JSONDecodeError is a ValueError
                message = f"{path}:{lineno}: {err}"
                if strict:
                    raise ValueError(message) from None
                problems.append(message)
                continue
            seen.add(str(rid))
            rows.append({"id": str(rid), "text": text, "start": start})
    return rows, problems


def _cmd_score(args: argparse.Namespace) -> int:
    import json

    from .atomic import atomic_lines
    from .bundle import Scorer

    scorer = Scorer.load(args.scorer)
    rows, problems = read_score_input(args.input, args.strict)
    for message in problems:
        print(f"probes score: skipped bad line {message}", file=sys.stderr)
    span = scorer.meta["capture"].get("span") == "solution"
    ex = scorer.features(
        [r["text"] for r in rows],
        [r["start"] for r in rows] if span else None,
        batch_size=args.batch_size,
        progress=True,
    )
    keep = ~ex.skipped.numpy()
    X = ex.values.numpy()
    p = scorer.predict_proba_features(X[keep], ex.names)[:, 1] if keep.any() else []
    d = scorer.predict_features(X[keep], ex.names) if keep.any() else []
    out, k = [], 0
    for row, kept in zip(rows, keep, strict=True):
        entry = {"id": row["id"], "p_valid": None, "decision": None, "skipped": not kept}
        if kept:
            entry.update(p_valid=float(p[k]), decision=int(d[k]))
            k += 1
        out.append(json.dumps(entry))
    atomic_lines(args.output, out)
    print(
        f"scored {int(keep.sum())} of {len(rows)} records ({len(problems)} bad lines, "
        f"{int((~keep).sum())} too long) -> {args.output}"
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bundle import Scorer

    source = Path(args.results) / "bundles" / args.scorer
    if not source.is_dir():
        available = sorted(p.name for p in (Path(args.results) / "bundles").glob("*"))
        raise ValueError(f"no scorer {args.scorer!r} in {args.results}; available: {available}")
    path = Scorer.load(source).save(args.out)
    print(f"exported {args.scorer} to {path}")
    return 0


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
    e.add_argument("--accelerator", help="cpu, gpu or auto")
    e.add_argument("--devices", type=int, help="processes (devices) per node")
    e.add_argument("--num-nodes", dest="num_nodes", type=int, help="nodes")
    e.add_argument("--strategy", help="auto, or ddp for several processes")
    e.set_defaults(func=_cmd_extract)
    sc = sub.add_parser("score", help="score new texts with an exported scorer bundle")
    sc.add_argument("--scorer", required=True, help="bundle folder (scorer.json + weights)")
    sc.add_argument("--input", required=True, help="JSONL: id and text (or problem + solution)")
    sc.add_argument("--output", required=True, help="JSONL: id, p_valid, decision, skipped")
    sc.add_argument("--batch-size", dest="batch_size", type=int, default=4)
    sc.add_argument("--strict", action="store_true", help="stop at the first bad line")
    sc.set_defaults(func=_cmd_score)
    ex = sub.add_parser("export", help="copy a finished experiment's scorer bundle elsewhere")
    ex.add_argument("--results", required=True, help="the experiment's results folder")
    ex.add_argument("--scorer", required=True, help="scorer name (e.g. spectral_lr)")
    ex.add_argument("--out", required=True, help="destination folder")
    ex.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        ValueError,
        OSError,
        ModelPackageMissingError,
        AttentionUnavailableError,
        NonFiniteAttentionError,
    ) as err:
        print(f"probes {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
