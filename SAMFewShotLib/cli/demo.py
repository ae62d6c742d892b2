"""``samfewshot demo [-o DIR]``: every engine on a shipped brain MRI template (no weights, no network)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..progress import CancelToken
from .arguments import add_progress_argument
from .exit_codes import EXIT_OK


def add_demo_parser(subparsers) -> None:
    """Register ``samfewshot demo`` on ``subparsers`` (the top-level subparsers action)."""
    p = subparsers.add_parser("demo", help="run every engine on a shipped brain MRI template (no weights, no network)")
    p.add_argument("-o", "--output", default="samfewshot_demo", help="output folder (created)")
    p.add_argument("--k", type=int, default=5, help="annotated slices")
    p.add_argument("--engines", default="interpolate,register,auto")
    add_progress_argument(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace, progress, cancel: CancelToken) -> int:
    from ..demo import run_demo

    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    result = run_demo(args.output, engines=engines, k=args.k, progress=progress, cancel=cancel)
    print(result.table())
    print(f"Outputs written to {Path(args.output).resolve()} (QC pictures: <engine>-qc.png)")
    return EXIT_OK
