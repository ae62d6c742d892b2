"""``samfewshot atlas train``: arguments and command (registered by ``cli_atlas.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...cli_common import EXIT_OK, UserError
from ...progress import CancelToken, Progress


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``ATLAS_IMAGE ATLAS_LABELS UNLABELED_DIR -o BUNDLE [--name] [--size] [--iterations]
    [--teacher] [--work-dir] [--resume] [--device] [--progress]`` to ``parser``."""
    from ...progress import add_progress_argument
    from .defaults import DEFAULT_ITERATIONS, DEFAULT_SIZE

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
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    add_progress_argument(parser)


def cmd_atlas_train(args: argparse.Namespace, progress: Progress, cancel: CancelToken) -> int:
    """Run ``samfewshot atlas train``; returns the exit code (UserError/ValueError for bad input)."""
    from ...cli_common import check_outputs_differ
    from ...volume_io import read_labels, read_volume
    from .data import read_unlabeled_folder
    from .training import train_rrl_bundle

    if args.size < 32 or args.size % 32:
        raise UserError(f"--size must be a multiple of 32 (32, 64, 96, 128, ...), not {args.size}")
    if args.iterations < 1:
        raise UserError(f"--iterations must be >= 1, not {args.iterations}")
    output = Path(args.output).expanduser()
    check_outputs_differ(str(output), [args.atlas_image, args.atlas_labels, args.unlabeled_dir])
    if not output.parent.is_dir():
        raise UserError(f"Output folder {output.parent} does not exist")
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
