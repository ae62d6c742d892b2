"""``samfewshot fewshot train|apply|info``: the reusable few-shot head (Xie et al.).

    samfewshot fewshot train IMAGE ANNOTATION -o HEAD.sfs --checkpoint C [--labels 1,3=spleen]
                             [--axis auto|axial|coronal|sagittal] [--empty-slices SPEC]
                             [--window auto|percentile|PRESET] [--iterations N] [--learning-rate LR]
                             [--model-type T] [--device auto|cpu|cuda] [--report PATH] [--progress ...]
    samfewshot fewshot apply IMAGE HEAD.sfs -o OUT --checkpoint C [--range FIRST:LAST]
                             [--model-type T] [--device ...] [--report PATH] [--progress ...]
    samfewshot fewshot info HEAD.sfs [--json]

``train`` writes the head (decoder state, target embeddings, label names/colours, the base
checkpoint's sha256, the preprocessing); ``apply`` refuses a checkpoint other than the head's
base model. Reports: seconds per stage, training iterations, encoder calls, cache hits, peak
memory. Bad input exits 2 with one line (``cli/main.py`` turns InputErrors into that).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from ..errors import InputError
from ..files import write_json_atomic
from .arguments import (
    add_annotation_arguments,
    add_progress_argument,
    add_report_argument,
    add_sam_model_arguments,
    parse_labels,
    parse_range,
)
from .exit_codes import EXIT_OK
from .outputs import check_output_and_report


def add_fewshot_parser(subparsers) -> None:
    """Register ``samfewshot fewshot train|apply|info`` on ``subparsers`` (the top-level subparsers action)."""
    parser = subparsers.add_parser(
        "fewshot",
        help="train a few-shot SAM decoder head on annotated slices, or apply one to a volume",
        description="Few-shot fine-tuning of SAM's mask decoder (Xie et al.): train a reusable head (.sfs) "
        "on a few annotated slices, apply it to any volume.",
    )
    sub = parser.add_subparsers(dest="fewshot_command", required=True, metavar="{train,apply,info}")

    p = sub.add_parser("train", help="train a head on the annotated slices of an image")
    p.add_argument("image", help="image: NIfTI, NRRD, MHA, ... file or a DICOM series folder")
    p.add_argument("annotation", help="label image on the image grid, or .seg.nrrd")
    p.add_argument("-o", "--output", required=True, help="the head file to write (.sfs)")
    p.add_argument("--labels", default=None, help='labels to train, optionally renamed: "1,3=spleen" (default: all)')
    add_annotation_arguments(p)
    p.add_argument("--window", default="auto", help="intensity window: auto, percentile or a CT preset name")
    p.add_argument("--iterations", type=int, default=None, help="training iterations (default: 50-100 by shots)")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    _add_model_arguments(p)
    p.set_defaults(func=cmd_fewshot_train)

    p = sub.add_parser("apply", help="apply a head to an image (every slice, or --range)")
    p.add_argument("image", help="image: NIfTI, NRRD, MHA, ... file or a DICOM series folder")
    p.add_argument("head", help="few-shot head file (.sfs) written by `samfewshot fewshot train`")
    p.add_argument("-o", "--output", required=True, help="output labels: .nii.gz, .nrrd, .mha or .seg.nrrd")
    p.add_argument("--range", default=None, metavar="FIRST:LAST", help="slices to predict (inclusive; default all)")
    _add_model_arguments(p)
    p.set_defaults(func=cmd_fewshot_apply)

    p = sub.add_parser("info", help="what a head holds: labels, base model, preprocessing, training")
    p.add_argument("head", help="few-shot head file (.sfs)")
    p.add_argument("--json", action="store_true", help="print the head's manifest as JSON")
    add_progress_argument(p)
    p.set_defaults(func=cmd_fewshot_info)


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    add_sam_model_arguments(
        p, checkpoint_required=True, checkpoint_help="base SAM checkpoint path or name (see samfewshot weights list)"
    )
    add_report_argument(p, help="write a JSON report: seconds, counters")
    add_progress_argument(p)


def _check_paths(args: argparse.Namespace, inputs: list[str]) -> None:
    """InputError for a report path that cannot be written, or an output/report that is an input."""
    check_output_and_report(args.output, args.report, inputs)


def _check_head_output(path: str) -> None:
    """InputError unless a head file can be written at ``path``."""
    from ..fewshot.head import SUFFIX

    target = Path(path)
    folder = target.parent
    problems = (
        (not target.name.endswith(SUFFIX), f"The head file must end with {SUFFIX}, not {path!r}"),
        (target.is_dir(), f"Head path {path} is a folder, not a file"),
        (not folder.is_dir(), f"Head folder {folder} does not exist"),
        (not os.access(folder, os.W_OK), f"Head folder {folder} is not writable"),
    )
    for found, message in problems:
        if found:
            raise InputError(message)


def cmd_fewshot_train(args: argparse.Namespace, progress, cancel) -> int:
    from ..annotation import SparseAnnotation, axis_from_name, parse_empty_slices
    from ..fewshot.apply import train_head
    from ..fewshot.fit import check_labels
    from ..fewshot.head import save_head
    from ..fewshot.training import TrainingConfig
    from ..memory import peak_rss_mib
    from ..volume_io import read_labels, read_volume

    start = time.perf_counter()
    _check_head_output(args.output)
    config = TrainingConfig(iterations=args.iterations, learning_rate=args.learning_rate)
    _check_paths(args, [args.image, args.annotation])
    image = read_volume(args.image)
    labels = read_labels(args.annotation)
    image.require_same_grid(labels.volume, "annotation")
    names = parse_labels(args.labels, labels) if args.labels else {}
    if names:
        labels = labels.with_array(
            labels.array,
            tuple(replace(labels.segment(v), name=names[v]) if v in names else labels.segment(v)
                  for v in labels.label_values()),
        )
    empty = parse_empty_slices(args.empty_slices, labels.label_values()) if args.empty_slices else None
    axis = None if args.axis == "auto" else axis_from_name(args.axis, image.direction)
    annotation = SparseAnnotation.from_labels(labels, axis=axis, empty_slices=empty)
    chosen = check_labels(annotation, list(names) or None, f"the annotation {args.annotation}")
    read_seconds = time.perf_counter() - start
    fit = train_head(
        image, annotation, checkpoint=args.checkpoint, model_type=args.model_type, device=args.device,
        window=args.window, labels=chosen, config=config, progress=progress, cancel=cancel,
    )
    save_head(fit.head, args.output)
    if args.report:
        encoding = fit.encoding
        write_json_atomic(args.report, {
            "command": "fewshot train",
            "image": args.image,
            "annotation": args.annotation,
            "output": args.output,
            "axis": annotation.axis,
            "labels": {s.value: s.display_name() for s in fit.head.segments},
            "annotated_slices": {v: annotation.annotated_slices(v) for v in fit.head.label_values},
            "held_out": fit.held_out,
            "seconds": {"read": read_seconds, "encode": encoding.seconds, "train": fit.training.seconds,
                        "total": time.perf_counter() - start},
            "counters": {"encoder_calls": encoding.encoder_calls, "slices_encoded": encoding.slices_encoded,
                         "cache_hits": encoding.cache_hits, "train_iterations": fit.training.iterations,
                         "train_seconds": round(fit.training.seconds, 3), "peak_rss_mib": peak_rss_mib()},
            "training": fit.head.training,
        })
    return EXIT_OK


def cmd_fewshot_apply(args: argparse.Namespace, progress, cancel) -> int:
    from ..fewshot.apply import run_head
    from ..fewshot.head import load_head
    from ..volume_io import check_writable, read_volume, write_labels

    start = time.perf_counter()
    check_writable(args.output, "labels")
    _check_paths(args, [args.image, args.head])
    head = load_head(args.head)
    image = read_volume(args.image)
    slices = parse_range(args.range, image.shape[head.axis]) if args.range else None
    result = run_head(
        head, image, checkpoint=args.checkpoint, model_type=args.model_type, device=args.device, slices=slices,
        progress=progress, cancel=cancel,
    )
    write_labels(result.labels, args.output)
    if args.report:
        write_json_atomic(args.report, {
            "command": "fewshot apply",
            "image": args.image,
            "head": args.head,
            "output": args.output,
            "axis": result.axis,
            "slices": [result.slices[0], result.slices[-1]],
            "labels": {s.value: s.display_name() for s in head.segments},
            "seconds": dict(result.seconds, total=time.perf_counter() - start),
            "counters": result.counters,
        })
    return EXIT_OK


def cmd_fewshot_info(args: argparse.Namespace, progress, cancel) -> int:
    from ..fewshot.head import load_head

    head = load_head(args.head)
    manifest = head.manifest()
    if args.json:
        print(json.dumps(manifest, indent=2))
        return EXIT_OK
    base, training = head.base_model, head.training
    print(f"Few-shot head {args.head}")
    print(f"  base model: {base.name or '?'} ({base.model_type or '?'}), sha256 {base.sha256}")
    print(f"  labels: {', '.join(f'{s.value}={s.display_name()}' for s in head.segments)}")
    print(f"  shots: {', '.join(f'{v}: {len(t)}' for v, t in head.targets.items())}; axis {head.axis}")
    print(f"  preprocessing: window {head.preprocessing.window} "
          f"[{head.preprocessing.low:g}, {head.preprocessing.high:g}]")
    print(f"  training: {training.get('iterations')} iterations in {training.get('seconds')} s "
          f"(best {training.get('best_iteration')})")
    return EXIT_OK
