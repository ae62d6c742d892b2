"""``samfewshot sfr train|stitch``: SFR study models.

    samfewshot sfr train LABELED LABELS UNLABELED_DIR -o study_model.zip [--pseudo atlas|sam|none|off]
                         [--checkpoint C] [--select 0.5] [--method mean_teacher|supervised]
                         [--iterations N] [--patch P] [--spacing MM] [--work-dir DIR] [--resume]
                         [--device auto|cpu|cuda|mps] [--progress bar|json|none]
    samfewshot sfr stitch IMAGE -o DIR [--axis 0|1|2] [--grid N] [--window auto|percentile|PRESET]
                          [--labels LABELS]

The bundle ``sfr train`` writes runs through ``samfewshot atlas apply`` and ``batch``. Bad input
raises InputError (the top-level ``main`` prints one line and exits 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..progress import CancelToken, Progress, add_progress_argument
from .arguments import add_checkpoint_argument, add_device_argument
from .exit_codes import EXIT_OK


def add_sfr_parser(subparsers) -> None:
    """Add ``samfewshot sfr train|stitch`` to the top-level ``subparsers`` action; each command's
    ``func(args, progress, cancel) -> exit code`` is set with ``set_defaults``."""
    parser = subparsers.add_parser(
        "sfr", help="SFR study models: one labelled volume + the unlabelled study -> a fast 3D segmenter",
        description="SFR (stitching, fine-tuning, re-training): pseudo-labels on the unlabelled volumes, "
        "a MONAI 3D network re-trained with Mean Teacher, written as an atlas bundle (engine sfr).",
    )
    sub = parser.add_subparsers(dest="sfr_command", required=True, metavar="{train,stitch}")

    p = sub.add_parser("train", help="train a study model bundle")
    p.add_argument("labeled", metavar="LABELED", help="the labelled image (file or DICOM folder)")
    p.add_argument("labels", metavar="LABELS", help="its label map on the same grid (.nii.gz, .nrrd, .seg.nrrd)")
    p.add_argument("unlabeled_dir", metavar="UNLABELED_DIR", help="folder of the study's unlabelled images")
    p.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="bundle to write (.zip or a folder)")
    p.add_argument("--pseudo", default="atlas", choices=("atlas", "sam", "none", "off"),
                   help="pseudo-label source: atlas (elastix registration, no weights), sam (SAM's decoder "
                   "fine-tuned on the labelled volume's mosaics, needs --checkpoint), none (labels copied, "
                   "no registration), off (no pseudo-labels: supervised-only or plain Mean Teacher)")
    add_checkpoint_argument(p, help="SAM checkpoint (path or registry name) for --pseudo sam")
    p.add_argument("--sam-iterations", type=int, default=100,
                   help="mosaic fine-tuning steps of SAM's decoder (default 100)")
    p.add_argument("--select", type=float, default=None, metavar="FRACTION",
                   help=("SFR+: keep this fraction (0-1] of the pseudo-labelled volumes that agree best with the "
                         "Mean Teacher half-way through training (default: all, SFR)"))
    p.add_argument("--method", default="mean_teacher", choices=("mean_teacher", "supervised"),
                   help="semi-supervised method of the re-training (default mean_teacher)")
    p.add_argument("--iterations", type=int, default=300, help="re-training iterations (default 300)")
    p.add_argument("--patch", type=int, default=48,
                   help="patch edge in working voxels, a multiple of 8, >= 16 (default 48)")
    p.add_argument("--spacing", type=float, default=None, metavar="MM",
                   help="isotropic working spacing of the network in mm (default: the labelled image's spacing)")
    p.add_argument("--name", default=None, help="bundle name (default: the output's stem)")
    p.add_argument("--work-dir", default=None, metavar="DIR",
                   help="pseudo-labels and checkpoints (default <BUNDLE>.work)")
    p.add_argument("--resume", action="store_true", help="reuse the work folder's pseudo-labels and checkpoint")
    p.add_argument("--seed", type=int, default=0, help="seed of the network and the patch draws")
    add_device_argument(p, help="torch device")
    add_progress_argument(p)
    p.set_defaults(func=cmd_sfr_train)

    p = sub.add_parser("stitch", help="write an image's slice mosaics (what SAM sees in SFR) as PNG files")
    p.add_argument("image", metavar="IMAGE", help="image file or DICOM folder")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for mosaic_<i>.png (created)")
    p.add_argument("--axis", type=int, default=0, choices=(0, 1, 2), help="numpy axis: 0 axial, 1 coronal, 2 sagittal")
    p.add_argument("--grid", type=int, default=None,
                   help="n for n x n slices per mosaic (default: largest without down-sampling, <= 4)")
    p.add_argument("--window", default="auto", help="auto, percentile or a CT preset (soft-tissue, liver, ...)")
    p.add_argument("--labels", default=None, metavar="LABELS",
                   help="also write the label map's mosaics (labels_<i>.png)")
    add_progress_argument(p)
    p.set_defaults(func=cmd_sfr_stitch)


def _read_unlabelled(folder: str, progress: Progress, cancel: CancelToken):
    from SAMFewShotLib.atlas.rrl.data import read_unlabeled_folder

    return read_unlabeled_folder(folder, None, progress=progress, cancel=cancel)


def cmd_sfr_train(args: argparse.Namespace, progress: Progress, cancel: CancelToken) -> int:
    """Run ``samfewshot sfr train``; ValueError for bad input."""
    from SAMFewShotLib.sfr.pipeline import train_study_model
    from SAMFewShotLib.sfr.retraining import RetrainSettings
    from SAMFewShotLib.volume_io import read_labels, read_volume

    if args.iterations < 1:
        raise ValueError(f"--iterations must be >= 1, not {args.iterations}")
    if args.patch < 16 or args.patch % 8:
        raise ValueError(f"--patch must be a multiple of 8 and at least 16, not {args.patch}")
    if args.select is not None and not 0.0 < args.select <= 1.0:
        raise ValueError(f"--select must be in (0, 1], not {args.select}")
    if args.spacing is not None and not args.spacing > 0:
        raise ValueError(f"--spacing must be positive (mm), not {args.spacing}")
    if args.pseudo == "sam" and not args.checkpoint:
        raise ValueError("--pseudo sam needs --checkpoint PATH or NAME (see: samfewshot weights list)")
    if args.checkpoint and args.pseudo != "sam":
        raise ValueError("--checkpoint is only used with --pseudo sam")
    if args.sam_iterations < 1:
        raise ValueError(f"--sam-iterations must be >= 1, not {args.sam_iterations}")
    output = Path(args.output).expanduser()
    inputs = [Path(p).expanduser().resolve() for p in (args.labeled, args.labels, args.unlabeled_dir)]
    if output.resolve() in inputs:
        raise ValueError(f"Output path {output} is one of the inputs: choose another output")
    if not output.parent.is_dir():
        raise ValueError(f"Output folder {output.parent} does not exist")
    image = read_volume(args.labeled)
    labels = read_labels(args.labels)
    image.require_same_grid(labels.volume, "label map")
    unlabelled = _read_unlabelled(args.unlabeled_dir, progress, cancel)
    settings = RetrainSettings(iterations=args.iterations, patch=args.patch, method=args.method, seed=args.seed)
    source_options = None
    if args.pseudo == "sam":
        source_options = {"checkpoint": args.checkpoint, "device": args.device, "iterations": args.sam_iterations}
    report = train_study_model(
        image, labels, unlabelled, output, pseudo=None if args.pseudo == "off" else args.pseudo, select=args.select,
        spacing_mm=None if args.spacing is None else (args.spacing,) * 3, settings=settings,
        source_options=source_options, name=args.name, work_dir=args.work_dir, resume=args.resume,
        device=args.device, progress=progress, cancel=cancel,
    )
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    print(f"Wrote {report.bundle} ({report.iterations} iterations; {seconds})")
    return EXIT_OK


def cmd_sfr_stitch(args: argparse.Namespace, progress: Progress, cancel: CancelToken) -> int:
    """Run ``samfewshot sfr stitch``; ValueError for bad input."""
    import numpy as np
    from PIL import Image

    from SAMFewShotLib.sam.preprocess import Preprocessing
    from SAMFewShotLib.sfr.stitching import (
        default_grid,
        plan_mosaics,
        stitch,
        stitch_image,
    )
    from SAMFewShotLib.volume_io import read_labels, read_volume

    output = Path(args.output).expanduser()
    if output.exists() and not output.is_dir():
        raise ValueError(f"{output}: is a file; give a folder for the mosaics")
    if not output.parent.is_dir():
        raise ValueError(f"Output folder {output.parent} does not exist")
    image = read_volume(args.image)
    labels = None
    if args.labels:
        labels = read_labels(args.labels)
        image.require_same_grid(labels.volume, "label map")
    preprocessing = Preprocessing.for_volume(image, args.window)
    grid = args.grid if args.grid is not None else default_grid(image, args.axis)
    layouts = plan_mosaics(image, args.axis, grid)
    output.mkdir(exist_ok=True)
    for i, layout in enumerate(layouts):
        cancel.raise_if_cancelled()
        Image.fromarray(stitch_image(image, layout, preprocessing)).save(output / f"mosaic_{i}.png")
        if labels is not None:
            mosaic = stitch(labels.array, layout, linear=False)
            scale = 255 // max(1, int(labels.array.max()))
            grey = (mosaic.astype(np.int64) * scale).clip(0, 255).astype(np.uint8)
            Image.fromarray(grey).save(output / f"labels_{i}.png")
        progress("sfr: stitch", i + 1, len(layouts))
    print(f"Wrote {len(layouts)} mosaic(s) of {grid}x{grid} slices along axis {args.axis} to {output}")
    return EXIT_OK
