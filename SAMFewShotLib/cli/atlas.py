"""``samfewshot atlas create|info|apply|train``: one-shot atlas bundles.

    samfewshot atlas create ATLAS_IMAGE ATLAS_LABELS [--atlas IMAGE LABELS ...] -o BUNDLE
                            [--name N] [--modality CT|MR] [--labels-json FILE] [--parameters FILE]
    samfewshot atlas info BUNDLE [--json]
    samfewshot atlas apply IMAGE BUNDLE -o OUT [--fusion majority|staple|local]
                           [--refine sam --checkpoint C] [--device auto|cpu|cuda] [--report PATH]
    samfewshot atlas train ATLAS_IMAGE ATLAS_LABELS UNLABELED_DIR -o BUNDLE [...]   (RRL-MedSAM)

BUNDLE: a ``.zip`` file or a folder (see :mod:`SAMFewShotLib.atlas.bundle`). Bad input exits 2
with one line (``cli/main.py`` turns the InputErrors raised here into that); outputs are written
atomically, only on success.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..atlas.fusion_methods import FUSION_METHODS
from ..errors import InputError
from ..files import write_json_atomic
from ..progress import CancelToken, Progress
from .arguments import (
    add_checkpoint_argument,
    add_device_argument,
    add_progress_argument,
    add_report_argument,
)
from .exit_codes import EXIT_OK
from .outputs import check_output_and_report, check_outputs_differ


def add_atlas_parser(subparsers) -> None:
    """Register ``samfewshot atlas create|info|apply|train`` on ``subparsers`` (the top-level subparsers action)."""
    parser = subparsers.add_parser(
        "atlas",
        help="one-shot atlas segmentation: create, inspect, apply or train an atlas bundle",
        description="Atlas bundles: labelled atlas images (registration engine) or a trained RRL-MedSAM network.",
    )
    sub = parser.add_subparsers(dest="atlas_command", required=True, metavar="{create,info,apply,train}")

    p = sub.add_parser("create", help="bundle one or more labelled atlas images (registration engine)")
    p.add_argument("atlas_image", metavar="ATLAS_IMAGE", help="atlas image: NIfTI, NRRD, MHA, ... or a DICOM folder")
    p.add_argument(
        "atlas_labels", metavar="ATLAS_LABELS", help="its label map on the same grid (.seg.nrrd keeps names)"
    )
    p.add_argument(
        "--atlas", nargs=2, action="append", default=[], metavar=("IMAGE", "LABELS"),
        help="a further atlas (repeatable): multi-atlas bundles are fused when applied",
    )
    p.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="bundle to write: NAME.zip or a folder")
    p.add_argument("--name", default=None, help="atlas name (default: the output's name)")
    p.add_argument("--modality", default="CT", choices=("CT", "MR"), help="image modality (default CT)")
    p.add_argument(
        "--labels-json", default=None, metavar="FILE",
        help='label table: a JSON list of {"value", "name", "color": [r, g, b] in 0-1, "terminology"} '
        "(default: names and colours of a .seg.nrrd, else label_<value>)",
    )
    p.add_argument(
        "--parameters", default=None, metavar="FILE",
        help="registration settings as a JSON object (see SAMFewShotLib/atlas/registration.py; default: built-in)",
    )
    add_progress_argument(p)
    p.set_defaults(func=cmd_atlas_create)

    p = sub.add_parser("info", help="describe a bundle (validated: version, members, sha256)")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_progress_argument(p)
    p.set_defaults(func=cmd_atlas_info)

    p = sub.add_parser("apply", help="segment an image with a bundle")
    p.add_argument("image", help="image: NIfTI, NRRD, MHA, ... file or a DICOM series folder")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("-o", "--output", required=True, help="output labels: .seg.nrrd (names, colours kept), .nii.gz, ...")
    p.add_argument("--fusion", default="majority", choices=FUSION_METHODS, help="multi-atlas fusion (default majority)")
    p.add_argument("--refine", default=None, choices=("sam",), help="refine the result slice by slice with SAM")
    add_checkpoint_argument(p, help="SAM checkpoint path or name (with --refine sam)")
    add_device_argument(p)
    p.add_argument("--rrl-output", default=None, choices=("segmentation", "registration"),
                   help="RRL-MedSAM bundles: the segmentation decoder's labels or the atlas labels warped by the "
                        "predicted displacement (default: the bundle's choice)")
    p.add_argument("--rrl-refine", type=int, default=0, metavar="N",
                   help="RRL-MedSAM registration output: refine the predicted displacement for this image by N "
                        "steps of its NCC + smoothness loss (test-time optimisation, not in the paper; default 0)")
    add_report_argument(p, help="write a JSON report: seconds per stage, details")
    add_progress_argument(p)
    p.set_defaults(func=cmd_atlas_apply)

    p = sub.add_parser("train", help="train an RRL-MedSAM one-shot network from one atlas and unlabelled images")
    add_train_arguments(p)
    p.set_defaults(func=cmd_atlas_train)


def _read_json_file(path: str, what: str):
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(f"{what} file {path} does not exist")
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{what} file {path} is not valid JSON ({error})") from None


def cmd_atlas_create(args: argparse.Namespace, progress, cancel) -> int:
    from ..atlas.bundle import labels_from_json, write_bundle
    from ..atlas.registration import check_parameters
    from ..volume_io import read_labels, read_volume

    pairs = [(args.atlas_image, args.atlas_labels), *(tuple(pair) for pair in args.atlas)]
    check_outputs_differ(args.output, [path for pair in pairs for path in pair])
    labels = labels_from_json(_read_json_file(args.labels_json, "--labels-json")) if args.labels_json else None
    parameters = check_parameters(_read_json_file(args.parameters, "--parameters") if args.parameters else None)
    atlases = []
    for i, (image_path, labels_path) in enumerate(pairs):
        if cancel is not None:
            cancel.raise_if_cancelled()
        image, atlas_labels = read_volume(image_path), read_labels(labels_path)
        image.require_same_grid(atlas_labels.volume, f"atlas labels {labels_path}")
        if labels is not None:
            missing = sorted(set(atlas_labels.label_values()) - {label.value for label in labels})
            if missing:
                raise InputError(f"{labels_path}: label values {missing} are not in --labels-json")
        atlases.append((image, atlas_labels))
        progress("read atlases", i + 1, len(pairs))
    name = args.name or Path(args.output).name.removesuffix(".zip")
    path = write_bundle(args.output, name=name, atlases=atlases, labels=labels, modality=args.modality,
                        parameters=parameters)
    print(f"Wrote {path} ({len(atlases)} atlas{'es' if len(atlases) > 1 else ''})")
    return EXIT_OK


def _summary(info: dict) -> str:
    lines = [
        f"{info['name']}: {info['engine']} atlas bundle, format version {info['format_version']}",
        f"modality {info['modality']}, {info['atlases']} atlas image(s), normalisation {info['normalisation']}",
        f"{len(info['labels'])} labels:",
    ]
    for label in info["labels"]:
        colour = ", ".join(f"{c:.2f}" for c in label["color"])
        terminology = f"  [{label['terminology']}]" if label["terminology"] else ""
        lines.append(f"  {label['value']:>4}  {label['name']}  ({colour}){terminology}")
    for weights in info["weights"]:
        lines.append(f"weights {weights['member']} sha256 {weights['sha256']}")
    if info["parameters"]:
        lines.append("parameters: " + json.dumps(info["parameters"], sort_keys=True))
    return "\n".join(lines)


def cmd_atlas_info(args: argparse.Namespace, progress, cancel) -> int:
    from ..atlas.bundle import load_bundle

    info = load_bundle(args.bundle).info()
    print(json.dumps(info) if args.json else _summary(info))
    return EXIT_OK


def cmd_atlas_apply(args: argparse.Namespace, progress, cancel) -> int:
    from ..atlas.apply import apply_bundle, check_refine
    from ..atlas.bundle import load_bundle
    from ..volume_io import check_writable, read_volume, write_labels

    start = time.perf_counter()
    check_refine(args.refine, args.checkpoint)
    check_writable(args.output, "labels")
    check_output_and_report(args.output, args.report, [args.image, args.bundle])
    bundle = load_bundle(args.bundle)
    image = read_volume(args.image)
    result = apply_bundle(
        bundle, image, fusion=args.fusion, refine=args.refine, checkpoint=args.checkpoint, device=args.device,
        rrl_output=args.rrl_output, rrl_refine=args.rrl_refine, progress=progress, cancel=cancel,
    )
    write_labels(result.labels, args.output)
    seconds = dict(result.seconds, wall=time.perf_counter() - start)
    if args.report:
        write_json_atomic(
            args.report,
            {
                "command": "atlas apply",
                "image": args.image,
                "bundle": args.bundle,
                "output": args.output,
                "engine": bundle.engine,
                "fusion": args.fusion if bundle.engine == "registration" else None,
                "refine": args.refine,
                "labels": {label.value: label.name for label in bundle.labels},
                "seconds": seconds,
                "details": result.details,
            },
        )
    return EXIT_OK


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``ATLAS_IMAGE ATLAS_LABELS UNLABELED_DIR -o BUNDLE [--name] [--size] [--iterations]
    [--teacher] [--work-dir] [--resume] [--device] [--progress]`` to ``parser``."""
    from ..atlas.rrl.defaults import DEFAULT_ITERATIONS, DEFAULT_SIZE

    parser.add_argument("atlas_image", metavar="ATLAS_IMAGE", help="the labelled atlas image")
    parser.add_argument("atlas_labels", metavar="ATLAS_LABELS", help="its label map (.nii.gz, .nrrd, .seg.nrrd)")
    parser.add_argument(
        "unlabeled_dir", metavar="UNLABELED_DIR",
        help="folder of unlabelled images of the same modality and body region (one file or DICOM folder each)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="bundle to write (.zip or a folder)")
    parser.add_argument("--name", default=None, help="bundle name (default: the output's stem)")
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SIZE,
        help=f"cube edge in voxels the volumes are resampled to (default {DEFAULT_SIZE}, as in the paper)",
    )
    parser.add_argument(
        "--iterations", type=int, default=DEFAULT_ITERATIONS,
        help=f"training iterations of the joint registration-segmentation stage (default {DEFAULT_ITERATIONS})",
    )
    parser.add_argument(
        "--teacher", default=None, metavar="CHECKPOINT",
        help="SAM checkpoint (path or registry name) to distil the lightweight encoder from (stage 1); "
        "without it the encoder is trained only by the medical branch",
    )
    parser.add_argument(
        "--work-dir", default=None, metavar="DIR",
        help="folder for checkpoints (default: <BUNDLE>.work next to the output)",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue from the checkpoint in --work-dir (written every 50 iterations, at the end and on cancel)",
    )
    add_device_argument(parser, help="torch device")
    add_progress_argument(parser)


def cmd_atlas_train(args: argparse.Namespace, progress: Progress, cancel: CancelToken) -> int:
    """Run ``samfewshot atlas train``; returns the exit code (InputError for bad input)."""
    from ..atlas.rrl.data import read_unlabeled_folder
    from ..atlas.rrl.training import train_rrl_bundle
    from ..volume_io import read_labels, read_volume

    if args.size < 32 or args.size % 32:
        raise InputError(f"--size must be a multiple of 32 (32, 64, 96, 128, ...), not {args.size}")
    if args.iterations < 1:
        raise InputError(f"--iterations must be >= 1, not {args.iterations}")
    output = Path(args.output).expanduser()
    check_outputs_differ(str(output), [args.atlas_image, args.atlas_labels, args.unlabeled_dir])
    if not output.parent.is_dir():
        raise InputError(f"Output folder {output.parent} does not exist")
    image = read_volume(args.atlas_image)
    labels = read_labels(args.atlas_labels)
    image.require_same_grid(labels.volume, "atlas label")
    unlabeled = read_unlabeled_folder(args.unlabeled_dir, args.size, progress=progress, cancel=cancel)
    path = train_rrl_bundle(
        image, labels, unlabeled, output, name=args.name, size=args.size, iterations=args.iterations,
        teacher_checkpoint=args.teacher, resume=args.resume, work_dir=args.work_dir, device=args.device,
        progress=progress, cancel=cancel,
    )
    print(f"Wrote {path}")
    return EXIT_OK
