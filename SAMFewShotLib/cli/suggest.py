"""``samfewshot suggest IMAGE --k 5 [--range FIRST:LAST] [--axis axial] [--checkpoint C]``: which
slices to annotate (SAM-MPA support-slice selection)."""

from __future__ import annotations

import argparse

import numpy as np

from ..errors import InputError
from ..files import write_json_atomic
from ..progress import CancelToken
from .arguments import (
    add_axis_argument,
    add_checkpoint_argument,
    add_model_type_argument,
    add_progress_argument,
    parse_range,
)
from .exit_codes import EXIT_OK
from .outputs import check_outputs_differ, check_report_path


def add_suggest_parser(subparsers) -> None:
    """Register ``samfewshot suggest`` on ``subparsers`` (the top-level subparsers action)."""
    p = subparsers.add_parser("suggest", help="which slices to annotate (SAM-MPA support-slice selection)")
    p.add_argument("image")
    p.add_argument("--k", type=int, default=5, help="how many slices to suggest")
    p.add_argument("--range", default=None, metavar="FIRST:LAST", help="candidate slices (inclusive)")
    add_axis_argument(p, auto=False)
    add_checkpoint_argument(p, help="SAM checkpoint (path or name): choose on pooled SAM embeddings")
    add_model_type_argument(p)
    p.add_argument("--json", default=None, metavar="OUT")
    add_progress_argument(p)
    p.set_defaults(func=cmd_suggest)


def cmd_suggest(args: argparse.Namespace, progress, cancel: CancelToken) -> int:
    from ..annotation import axis_from_name
    from ..suggest import suggest_slices
    from ..volume_io import read_volume

    if args.json:
        check_report_path(args.json)
        check_outputs_differ(args.json, [args.image])
    image = read_volume(args.image)
    axis = axis_from_name(args.axis, image.direction)
    stack = np.moveaxis(image.array, axis, 0)
    candidates = parse_range(args.range, stack.shape[0])
    if not 1 <= args.k <= len(candidates):
        raise InputError(f"--k must be between 1 and the {len(candidates)} candidate slices, not {args.k}")
    embeddings = None
    if args.checkpoint is not None:
        from ..suggest import sam_slice_embeddings

        embeddings = sam_slice_embeddings(image, axis, candidates, args.checkpoint, args.model_type, progress, cancel)
    suggestion = suggest_slices(stack, args.k, candidates, embeddings)
    slices = ", ".join(map(str, suggestion.slices))
    print(f"Annotate these {args.axis} slices: {slices} (chosen on {suggestion.features})")
    if args.json:
        write_json_atomic(
            args.json,
            {"axis": args.axis, "numpy_axis": axis, "slices": suggestion.slices, "features": suggestion.features},
        )
    return EXIT_OK
