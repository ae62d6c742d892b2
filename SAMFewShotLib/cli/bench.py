"""``samfewshot bench IMAGE REFERENCE --labels 5,1 --k 1,3,5,10 --engines ... [--json OUT]``:
Dice against a full reference for k simulated annotated slices."""

from __future__ import annotations

import argparse

from ..files import write_json_atomic
from ..progress import CancelToken
from .arguments import add_axis_argument, add_progress_argument, axis_or_auto, parse_ints, parse_labels
from .exit_codes import EXIT_OK
from .outputs import check_outputs_differ, check_report_path


def add_bench_parser(subparsers) -> None:
    """Register ``samfewshot bench`` on ``subparsers`` (the top-level subparsers action)."""
    p = subparsers.add_parser("bench", help="Dice-vs-k benchmark against a full reference segmentation")
    p.add_argument("image")
    p.add_argument("reference", help="full reference label map on the image grid")
    p.add_argument("--labels", default=None, help='label values, optionally named: "5=liver,1=spleen"')
    p.add_argument("--k", default="1,3,5,10", help="numbers of annotated slices, comma-separated")
    p.add_argument("--engines", default="interpolate,register,auto")
    add_axis_argument(p, auto=False)
    p.add_argument("--json", default=None, metavar="OUT", help="write all records and the summary as JSON")
    add_progress_argument(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace, progress, cancel: CancelToken) -> int:
    from ..bench import run_bench
    from ..volume_io import read_labels, read_volume

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
    axis = axis_or_auto(args.axis, image.direction)
    result = run_bench(
        image, reference, labels, ks, engines, axis=0 if axis is None else axis, progress=progress, cancel=cancel
    )
    result.image, result.reference = args.image, args.reference
    print(result.table())
    expected = result.expected_dice_table()
    if expected:
        print("\nExpected Dice (the engine's own estimate) against the true Dice:\n" + expected)
    if args.json:
        write_json_atomic(args.json, result.as_json())
    return EXIT_OK
