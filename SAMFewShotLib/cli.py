"""The ``samfewshot`` command.

    samfewshot propagate IMAGE ANNOTATION -o OUT [--engine auto|interpolate|register|...]
                         [--axis auto|axial|coronal|sagittal] [--empty-slices SPEC]
                         [--progress bar|json|none] [--report PATH]
    samfewshot bench IMAGE REFERENCE --labels 5,1,... --k 1,3,5,10 --engines ... [--json OUT]
    samfewshot suggest IMAGE --k 5 [--range FIRST:LAST] [--axis axial]
    samfewshot demo [-o DIR]
    samfewshot weights list | import PATH [--name N] | verify [NAME] | download NAME

Exit codes: 0 success; 2 bad input (one line on stderr naming the problem, nothing written,
inputs untouched); 130 cancelled (Ctrl-C or SIGTERM); 1 an unexpected failure (a bug: traceback).
Results are written only after the whole computation succeeded, atomically.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .cli_atlas import add_atlas_parser
from .cli_batch import add_batch_parser
from .cli_fewshot import add_fewshot_parser
from .cli_meta import add_meta_parser
from .cli_common import (
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_FAILURE,
    EXIT_OK,
    UserError,
    check_output_and_report,
    check_outputs_differ,
    check_report_path,
    write_json_atomic,
)
from .cli_weights import add_weights_parser
from .progress import Cancelled, CancelToken, add_progress_argument, make_progress

class _ArgumentParser(argparse.ArgumentParser):
    """argparse keeping the bad-input contract: one line on stderr and exit 2, no usage block."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _axis(name: str, direction) -> int | None:
    from .annotation import axis_from_name

    return None if name == "auto" else axis_from_name(name, direction)


def cmd_propagate(args: argparse.Namespace, progress, cancel: CancelToken) -> int:
    from .annotation import SparseAnnotation, parse_empty_slices
    from .engines import WEIGHTED_ENGINES, make_engine
    from .volume_io import check_writable, read_labels, read_volume, write_labels

    start = time.perf_counter()
    if args.engine.partition(":")[0] in WEIGHTED_ENGINES:
        options = dict(checkpoint=args.checkpoint, model_type=args.model_type, device=args.device)
        if args.refine is not None:
            options["refine"] = args.refine
        if args.init is not None:
            options["init"] = args.init
        engine = make_engine(args.engine, **options)
    else:
        engine = make_engine(args.engine)
        if (
            args.checkpoint is not None
            or args.device != "auto"
            or args.refine is not None
            or args.model_type
            or args.init is not None
        ):
            raise UserError(
                f"--checkpoint, --device, --refine, --model-type and --init are for the SAM engines; engine "
                f"{args.engine!r} needs no weights and runs on the CPU"
            )
    check_writable(args.output, "labels")
    check_output_and_report(args.output, args.report, [args.image, args.annotation])
    image = read_volume(args.image)
    labels = read_labels(args.annotation)
    image.require_same_grid(labels.volume, "annotation")
    empty = parse_empty_slices(args.empty_slices, labels.label_values()) if args.empty_slices else None
    annotation = SparseAnnotation.from_labels(labels, axis=_axis(args.axis, image.direction), empty_slices=empty)
    read_seconds = time.perf_counter() - start
    prediction = engine.propagate(image, annotation, progress=progress, cancel=cancel)
    write_start = time.perf_counter()
    write_labels(prediction.labels, args.output)
    seconds = dict(prediction.seconds, read=read_seconds, write=time.perf_counter() - write_start)
    seconds["total"] = time.perf_counter() - start
    if args.report:
        write_json_atomic(
            args.report,
            {
                "engine": args.engine,
                "image": args.image,
                "annotation": args.annotation,
                "output": args.output,
                "axis": int(annotation.axis),
                "annotated_slices": {v: annotation.annotated_slices(v) for v in annotation.label_values},
                "labels": {s.value: s.display_name() for s in prediction.labels.segments}
                or {v: f"Segment_{v}" for v in annotation.label_values},
                "seconds": seconds,
                "counters": prediction.counters,
                "expected_dice": prediction.expected_dice,
                "slice_confidence": prediction.slice_confidence,
                "details": prediction.details,
            },
        )
    return EXIT_OK


def cmd_bench(args: argparse.Namespace, progress, cancel: CancelToken) -> int:
    from .bench import parse_ints, parse_labels, run_bench
    from .volume_io import read_labels, read_volume

    ks = parse_ints(args.k, "--k values")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.json:
        check_report_path(args.json)
        check_outputs_differ(args.json, [args.image, args.reference])
    image = read_volume(args.image)
    reference = read_labels(args.reference)
    labels = parse_labels(args.labels, reference) if args.labels else {
        v: reference.segment(v).name or f"label {v}" for v in reference.label_values()
    }
    axis = _axis(args.axis, image.direction)
    result = run_bench(image, reference, labels, ks, engines, axis=0 if axis is None else axis, progress=progress, cancel=cancel)
    result.image, result.reference = args.image, args.reference
    print(result.table())
    if args.json:
        write_json_atomic(args.json, result.as_json())
    return EXIT_OK


def cmd_suggest(args: argparse.Namespace, progress, cancel: CancelToken) -> int:
    from .annotation import axis_from_name
    from .suggest import parse_range, suggest_slices
    from .volume_io import read_volume

    if args.json:
        check_report_path(args.json)
        check_outputs_differ(args.json, [args.image])
    image = read_volume(args.image)
    axis = axis_from_name(args.axis, image.direction)
    stack = np.moveaxis(image.array, axis, 0)
    candidates = parse_range(args.range, stack.shape[0])
    if not 1 <= args.k <= len(candidates):
        raise UserError(f"--k must be between 1 and the {len(candidates)} candidate slices, not {args.k}")
    embeddings = None
    if args.checkpoint is not None:
        from .suggest import sam_slice_embeddings

        embeddings = sam_slice_embeddings(image, axis, candidates, args.checkpoint, args.model_type, progress, cancel)
    suggestion = suggest_slices(stack, args.k, candidates, embeddings)
    print(f"Annotate these {args.axis} slices: {', '.join(map(str, suggestion.slices))} (chosen on {suggestion.features})")
    if args.json:
        write_json_atomic(
            args.json, {"axis": args.axis, "numpy_axis": axis, "slices": suggestion.slices, "features": suggestion.features}
        )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, progress, cancel: CancelToken) -> int:
    from .demo import run_demo

    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    result = run_demo(args.output, engines=engines, k=args.k, progress=progress, cancel=cancel)
    print(result.table())
    print(f"Outputs written to {Path(args.output).resolve()}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="samfewshot",
        description="Few annotated slices or one atlas in, a full 3D segmentation out.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("propagate", help="propagate a sparse slice annotation to the whole volume")
    p.add_argument("image", help="image: NIfTI, NRRD, MHA, ... file or a DICOM series folder")
    p.add_argument("annotation", help="label image on the image grid, or .seg.nrrd")
    p.add_argument("-o", "--output", required=True, help="output labels: .nii.gz, .nrrd, .mha or .seg.nrrd")
    p.add_argument(
        "--engine",
        default="auto",
        metavar="ENGINE",
        help="auto, interpolate or register; a suffix picks the slice registration of register and auto "
        "(register:tvl1, auto:elastix, ...); sam, fewshot, meta need weights (default: auto)",
    )
    p.add_argument("--axis", default="auto", choices=("auto", "axial", "coronal", "sagittal"))
    p.add_argument(
        "--empty-slices",
        default=None,
        metavar="SPEC",
        help='slices declared free of a structure: "12,40" (all labels) or "5:12,40;1:3" (per label); '
        "indices along the annotated axis",
    )
    p.add_argument("--checkpoint", default=None, help="SAM checkpoint path or name (SAM engines only)")
    p.add_argument("--model-type", default=None, help="SAM architecture override: vit_b, vit_l, vit_h, vit_t")
    p.add_argument("--refine", type=int, default=None, help="SAM post-refinement rounds (default 1)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="SAM engines only")
    p.add_argument(
        "--init", default=None, metavar="PATH", help="meta engine: meta-learned initialisation (samfewshot meta-train)"
    )
    p.add_argument("--report", default=None, metavar="PATH", help="write a JSON report: seconds per stage, counters")
    add_progress_argument(p)
    p.set_defaults(func=cmd_propagate)

    p = sub.add_parser("bench", help="Dice-vs-k benchmark against a full reference segmentation")
    p.add_argument("image")
    p.add_argument("reference", help="full reference label map on the image grid")
    p.add_argument("--labels", default=None, help='label values, optionally named: "5=liver,1=spleen"')
    p.add_argument("--k", default="1,3,5,10", help="numbers of annotated slices, comma-separated")
    p.add_argument("--engines", default="interpolate,register,auto")
    p.add_argument("--axis", default="axial", choices=("axial", "coronal", "sagittal"))
    p.add_argument("--json", default=None, metavar="OUT", help="write all records and the summary as JSON")
    add_progress_argument(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("suggest", help="which slices to annotate (SAM-MPA support-slice selection)")
    p.add_argument("image")
    p.add_argument("--k", type=int, default=5, help="how many slices to suggest")
    p.add_argument("--range", default=None, metavar="FIRST:LAST", help="candidate slices (inclusive)")
    p.add_argument("--axis", default="axial", choices=("axial", "coronal", "sagittal"))
    p.add_argument(
        "--checkpoint", default=None, help="SAM checkpoint (path or name): choose on pooled SAM embeddings"
    )
    p.add_argument("--model-type", default=None, help="SAM architecture override: vit_b, vit_l, vit_h, vit_t")
    p.add_argument("--json", default=None, metavar="OUT")
    add_progress_argument(p)
    p.set_defaults(func=cmd_suggest)

    p = sub.add_parser("demo", help="run every engine on a shipped brain MRI template (no weights, no network)")
    p.add_argument("-o", "--output", default="samfewshot_demo", help="output folder (created)")
    p.add_argument("--k", type=int, default=5, help="annotated slices")
    p.add_argument("--engines", default="interpolate,register,auto")
    add_progress_argument(p)
    p.set_defaults(func=cmd_demo)

    add_weights_parser(sub)
    add_fewshot_parser(sub)
    add_meta_parser(sub)
    add_atlas_parser(sub)
    add_batch_parser(sub)
    return parser


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    cancel = CancelToken()
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    progress = make_progress(args.progress)
    try:
        return args.func(args, progress, cancel)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"samfewshot: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # stdout closed by the reader (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except (Cancelled, KeyboardInterrupt):
        cancel.cancel()
        print("samfewshot: cancelled, nothing written", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        close = getattr(progress, "close", None)
        if close is not None:
            close()


if __name__ == "__main__":
    sys.exit(main())
