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
