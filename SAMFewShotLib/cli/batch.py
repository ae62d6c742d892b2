"""``samfewshot batch``: one model applied to a cohort.

    samfewshot batch INPUTS... --model MODEL [--annotation ANNOTATION] [--engine ENGINE]
                     [--checkpoint C] -o DIR [--scheduler local:N | tcp://HOST:PORT] [--workers N]
                     [--force] [--format seg.nrrd|nii.gz|both] [--progress bar|json|none]

With ``--progress json`` stdout carries the progress lines ``{"stage": "batch", "done": int,
"total": int}`` and, once per case as it finishes, exactly one line ``{"case": str, "status":
"done"|"failed"|"skipped", "seconds": float, "output": str|null, "error": str|null}``; the
summary goes to stderr. Exit codes: 0 every case done or skipped; 3 at least one case failed
(the others are written; see DIR/qc.csv and DIR/logs/); 2 bad input (nothing computed); 130
cancelled (finished cases are kept and skipped by the next run).
"""

from __future__ import annotations

import json
import sys

from ..atlas.fusion_methods import FUSION_METHODS
from ..errors import InputError
from ..progress import Cancelled
from .arguments import add_progress_argument, add_sam_model_arguments
from .exit_codes import EXIT_CANCELLED, EXIT_CASES_FAILED, EXIT_OK

FORMATS = {"seg.nrrd": ("seg.nrrd",), "nii.gz": ("nii.gz",), "both": ("seg.nrrd", "nii.gz")}


def _printer(kind: str):
    """The per-case callback: the contract's JSON line, or a readable line."""
    def print_result(result) -> None:
        if kind == "json":
            print(json.dumps(result.json_line()), flush=True)
            return
        where = result.error if result.status == "failed" else (result.outputs[0] if result.outputs else "")
        print(f"{result.status:8s} {result.case}  {result.seconds:7.1f} s  {where}", flush=True)

    return print_result


def cmd_batch(args, progress, cancel) -> int:
    from ..batch.dask_runner import check_scheduler
    from ..batch.inputs import expand_inputs
    from ..batch.models import load_model
    from ..batch.pipeline import run_batch

    if args.scheduler is not None:
        check_scheduler(args.scheduler)
        if args.workers is not None:
            raise InputError("--workers sets the local process pool; with --scheduler local:N give N instead")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, not {args.workers}")
    cases = expand_inputs(args.inputs, exclude=[args.output])
    model = load_model(
        args.model, out_dir=args.output, annotation=args.annotation, engine=args.engine, checkpoint=args.checkpoint,
        model_type=args.model_type, device=args.device, fusion=args.fusion, progress=progress, cancel=cancel,
    )
    try:
        summary = run_batch(
            cases, model, args.output, formats=FORMATS[args.format], force=args.force, scheduler=args.scheduler,
            workers=args.workers, on_result=_printer(args.progress), progress=progress, cancel=cancel,
        )
    except (Cancelled, KeyboardInterrupt):
        print(
            f"samfewshot: batch cancelled; finished cases are kept in {args.output} (run again to resume)",
            file=sys.stderr,
        )
        return EXIT_CANCELLED
    failed = summary.count("failed")
    print(
        f"{len(summary.results)} cases: {summary.count('done')} done, {summary.count('skipped')} skipped, "
        f"{failed} failed; report {summary.html}",
        file=sys.stderr if args.progress == "json" else sys.stdout,
    )
    return EXIT_CASES_FAILED if failed else EXIT_OK


def add_batch_parser(subparsers) -> None:
    """Register ``samfewshot batch`` on ``subparsers`` (the top-level subparsers action)."""
    p = subparsers.add_parser(
        "batch",
        help="apply an atlas bundle, a few-shot head or an annotated reference to many volumes",
        description="Segment every input volume with one model; per-case outputs in each case's own geometry, "
        "a QC table (qc.csv, qc.html) and montages. Cases already done are skipped (--force recomputes).",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="image files, folders (searched recursively), glob patterns or DICOM study folders (each series one case)",
    )
    p.add_argument(
        "--model", required=True,
        help="atlas bundle (.zip or folder with manifest.json), few-shot head (.sfs), "
        "or reference image (with --annotation)",
    )
    p.add_argument(
        "--annotation", default=None, help="reference image's annotation (label image on its grid or .seg.nrrd)"
    )
    p.add_argument(
        "--engine", default=None,
        help="engine propagating the reference's annotation once before registration to each case "
        "(default auto; none: the annotation is already complete)",
    )
    add_sam_model_arguments(
        p,
        checkpoint_help="SAM weights: required for .sfs heads; with a bundle: SAM refinement",
        model_type_help="SAM architecture override (reference with a SAM engine)",
        device_help="cuda: one GPU per case (dask resource GPU=1)",
    )
    p.add_argument("--fusion", default=None, choices=FUSION_METHODS, help="atlas bundles: label fusion")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument(
        "--scheduler", default=None, metavar="local:N|tcp://HOST:PORT",
        help="run the cases as dask.distributed tasks on a local cluster of N workers or on a scheduler",
    )
    p.add_argument("--workers", type=int, default=None, help="local process pool size (default: one per CPU core)")
    p.add_argument("--force", action="store_true", help="recompute cases that are already done")
    p.add_argument("--format", default="seg.nrrd", choices=tuple(FORMATS), help="label map format(s) per case")
    add_progress_argument(p)
    p.set_defaults(func=cmd_batch)
