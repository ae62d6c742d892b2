"""``samfewshot propagate IMAGE ANNOTATION -o OUT [--engine ENGINE] ...``: a sparse slice
annotation to a full 3D segmentation with one engine."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..engines.catalog import engine_family, needs_weights, with_support
from ..errors import InputError
from ..files import write_json_atomic
from ..progress import CancelToken
from .arguments import (
    add_annotation_arguments,
    add_checkpoint_argument,
    add_device_argument,
    add_encoder_runtime_argument,
    add_max_encode_argument,
    add_model_type_argument,
    add_progress_argument,
    add_report_argument,
    add_sam_slices_argument,
    add_support_argument,
    axis_or_auto,
)
from .exit_codes import EXIT_OK
from .outputs import check_output_and_report, check_outputs_differ, check_report_path


def add_propagate_parser(subparsers) -> None:
    """Register ``samfewshot propagate`` on ``subparsers`` (the top-level subparsers action)."""
    p = subparsers.add_parser("propagate", help="propagate a sparse slice annotation to the whole volume")
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
    add_annotation_arguments(p)
    add_support_argument(p)
    add_checkpoint_argument(p, help="SAM checkpoint path or name (SAM engines only)")
    add_model_type_argument(p)
    p.add_argument("--refine", type=int, default=None, help="SAM post-refinement rounds (default 1)")
    add_device_argument(p, help="SAM engines only")
    add_encoder_runtime_argument(p)
    add_max_encode_argument(p)
    add_sam_slices_argument(p)
    p.add_argument(
        "--init", default=None, metavar="PATH", help="meta engine: meta-learned initialisation (samfewshot meta-train)"
    )
    add_report_argument(p)
    p.add_argument(
        "--qc",
        default=None,
        metavar="PNG",
        help="also write a QC picture: the drawn slices, the result outlined on evenly spaced slices, "
        "low-confidence slices in orange",
    )
    add_progress_argument(p)
    p.set_defaults(func=cmd_propagate)


def check_qc_path(path: str, others: list[str]) -> None:
    """InputError unless ``path`` can take the QC picture: a .png file name in an existing,
    writable folder, none of ``others`` (the inputs and the other outputs)."""
    if Path(path).suffix.lower() != ".png":
        raise InputError(f"QC picture {path}: give a file name ending in .png")
    check_report_path(path, "QC picture")
    check_outputs_differ(path, others)


def _engine(args: argparse.Namespace):
    from ..engines import make_engine

    args.engine = with_support(args.engine, getattr(args, "support", None))
    if needs_weights(args.engine):
        options = dict(checkpoint=args.checkpoint, model_type=args.model_type, device=args.device)
        if args.refine is not None:
            options["refine"] = args.refine
        if args.init is not None:
            options["init"] = args.init
        runtime = getattr(args, "encoder_runtime", "auto")
        if engine_family(args.engine) == "sam":
            options["encoder_runtime"] = runtime
        elif runtime not in ("auto", "torch"):
            raise InputError(f"--encoder-runtime is for the sam engine, not {args.engine!r}")
        if getattr(args, "max_encode", None) is not None:
            if engine_family(args.engine) != "sam":
                raise InputError(f"--max-encode is for the sam engine, not {args.engine!r}")
            options["max_encode"] = args.max_encode
        if getattr(args, "sam_slices", "all") != "all":
            if engine_family(args.engine) != "sam":
                raise InputError(f"--sam-slices is for the sam engine, not {args.engine!r}")
            options["sam_slices"] = args.sam_slices
        return make_engine(args.engine, **options)
    engine = make_engine(args.engine)
    if (
        args.checkpoint is not None
        or args.device != "auto"
        or args.refine is not None
        or args.model_type
        or args.init is not None
        or getattr(args, "encoder_runtime", "auto") not in ("auto", "torch")
        or getattr(args, "max_encode", None) is not None
        or getattr(args, "sam_slices", "all") != "all"
    ):
        raise InputError(
            f"--checkpoint, --device, --refine, --model-type, --init, --encoder-runtime, --max-encode and "
            f"--sam-slices are "
            f"for the SAM engines; engine "
            f"{args.engine!r} needs no weights and runs on the CPU"
        )
    return engine


def cmd_propagate(args: argparse.Namespace, progress, cancel: CancelToken) -> int:
    from ..annotation import SparseAnnotation, parse_empty_slices
    from ..volume_io import check_writable, read_labels, read_volume, write_labels

    start = time.perf_counter()
    engine = _engine(args)
    check_writable(args.output, "labels")
    check_output_and_report(args.output, args.report, [args.image, args.annotation])
    if args.qc:
        check_qc_path(args.qc, [args.image, args.annotation, args.output, *([args.report] if args.report else [])])
    image = read_volume(args.image)
    labels = read_labels(args.annotation)
    image.require_same_grid(labels.volume, "annotation")
    empty = parse_empty_slices(args.empty_slices, labels.label_values()) if args.empty_slices else None
    annotation = SparseAnnotation.from_labels(
        labels, axis=axis_or_auto(args.axis, image.direction), empty_slices=empty
    )
    read_seconds = time.perf_counter() - start
    prediction = engine.propagate(image, annotation, progress=progress, cancel=cancel)
    write_start = time.perf_counter()
    if args.qc:  # first: a failed picture leaves no output behind (the labels and report are both or neither)
        from ..result_montage import write_result_montage

        write_result_montage(args.qc, image, annotation, prediction, engine=args.engine)
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
