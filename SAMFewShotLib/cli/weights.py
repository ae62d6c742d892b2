"""The ``samfewshot weights`` subcommand: the local SAM checkpoint cache.

    samfewshot weights list [--json]
    samfewshot weights import PATH [--name NAME] [--model-type vit_b|vit_l|vit_h|vit_t]
    samfewshot weights verify [NAME]
    samfewshot weights download NAME

The cache folder is ``$SAMFEWSHOT_HOME/weights`` or the user cache folder (see
:mod:`SAMFewShotLib.sam.weights_store`). ``download`` is the only command that uses the
network, and only for the registry entry named: typing it is the consent. Bad input exits 2
with one line (``cli/main.py`` turns the InputErrors raised here into that).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError
from .arguments import add_model_type_argument, add_progress_argument
from .exit_codes import EXIT_OK


def add_weights_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``weights`` (with list/import/verify/download) to the ``samfewshot`` subparsers."""
    parser = subparsers.add_parser(
        "weights",
        help="list, import, verify or download SAM checkpoints (cache: $SAMFEWSHOT_HOME or the user cache)",
        description="The local cache of SAM checkpoints. Nothing here uses the network except `download`.",
    )
    sub = parser.add_subparsers(dest="weights_command", required=True, metavar="{list,import,verify,download}")

    p = sub.add_parser("list", help="registry checkpoints with their status, and user imports")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    add_progress_argument(p)
    p.set_defaults(func=cmd_weights_list)

    p = sub.add_parser("import", help="copy a checkpoint file into the cache (the file itself is untouched)")
    p.add_argument("path", help="checkpoint file (.pth/.pt): a state dict of a SAM, MedSAM or MobileSAM")
    p.add_argument(
        "--name",
        default=None,
        help="name to record it under (default: registry name if recognised, else the file name)",
    )
    add_model_type_argument(p, help="vit_b, vit_l, vit_h or vit_t: checked against the weights")
    add_progress_argument(p)
    p.set_defaults(func=cmd_weights_import)

    p = sub.add_parser("verify", help="re-hash imported checkpoints and compare with the registry / recorded sha256")
    p.add_argument("name", nargs="?", default=None, help="one checkpoint (default: all imported)")
    add_progress_argument(p)
    p.set_defaults(func=cmd_weights_verify)

    p = sub.add_parser(
        "download",
        help="download a registry checkpoint over HTTP(S) (resumable, sha256-verified); the only network use",
    )
    p.add_argument("name", help="registry name (see `samfewshot weights list`)")
    add_progress_argument(p)
    p.set_defaults(func=cmd_weights_download)
    return parser


def _megabytes(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:.1f} MB"


def cmd_weights_list(args: argparse.Namespace, progress, cancel) -> int:
    from ..sam.encoder_budget import measured_seconds_per_slice
    from ..sam.weights_store import list_weights, weights_dir

    rows = list_weights()
    # this machine's fastest measured CPU seconds per slice of each architecture (earlier runs)
    measured = {t: measured_seconds_per_slice(t) for t in {r.model_type for r in rows}}
    if args.json:
        payload = {
            "weights_dir": str(weights_dir()),
            "checkpoints": [
                {
                    "name": r.name,
                    "source": r.source,
                    "model_type": r.model_type,
                    "family": r.family,
                    "status": r.status,
                    "path": str(r.path) if r.path is not None else None,
                    "size": r.size,
                    "sha256": r.sha256,
                    "licence": r.licence,
                    "url": r.url,
                    "cpu_seconds_per_slice_here": measured[r.model_type],
                }
                for r in rows
            ],
        }
        print(json.dumps(payload, indent=2))
        return EXIT_OK
    print(f"Weights cache: {weights_dir()}")
    width = max(len(r.name) for r in rows)
    types = max([6] + [len(r.model_type) for r in rows])
    families = max([10] + [len(r.family) for r in rows])
    print(f"{'NAME':<{width}}  {'TYPE':<{types}}  {'FAMILY':<{families}}  {'SIZE':>10}  {'CPU S/SLICE':>11}  STATUS")
    for r in rows:
        seconds = measured[r.model_type]
        here = "-" if seconds is None else f"{seconds:.2f}"
        print(
            f"{r.name:<{width}}  {r.model_type:<{types}}  {r.family:<{families}}  {_megabytes(r.size):>10}  "
            f"{here:>11}  {r.status}"
        )
    print("CPU S/SLICE: the fastest image-encoder seconds per slice measured by earlier runs on this machine "
          "(any runtime; '-': not run here yet)")
    return EXIT_OK


def cmd_weights_import(args: argparse.Namespace, progress, cancel) -> int:
    from ..sam.weights_store import import_checkpoint

    result = import_checkpoint(args.path, name=args.name, model_type=args.model_type, progress=progress, cancel=cancel)
    r = result.record
    how = {
        "sha256": "matches the registry sha256",
        "md5": "matches the registry md5",
        "first-use": "no reference hash: recorded on first use",
        "user": "recorded",
    }[r.verified_by]
    print(f"Imported {r.name} ({r.model_type}, {r.family}) -> {result.path}")
    print(f"sha256 {r.sha256} ({how})")
    for note in result.notes:
        print(f"note: {note}")
    return EXIT_OK


def cmd_weights_verify(args: argparse.Namespace, progress, cancel) -> int:
    from ..sam.weights_store import verify_weights, weights_dir

    results = verify_weights(args.name, progress=progress, cancel=cancel)
    if not results:
        print(f"No checkpoints imported in {weights_dir()}")
        return EXIT_OK
    for r in results:
        print(f"{'ok' if r.ok else 'FAILED':<6}  {r.name}  {r.message}  ({r.path})")
    failed = [r.name for r in results if not r.ok]
    if failed:
        raise InputError(f"{len(failed)} of {len(results)} checkpoints failed verification: {', '.join(failed)}")
    return EXIT_OK


def cmd_weights_download(args: argparse.Namespace, progress, cancel) -> int:
    from ..sam.checkpoints import get_checkpoint
    from ..sam.weights_store import download_checkpoint

    entry = get_checkpoint(args.name)
    print(
        f"Downloading {entry.name} ({_megabytes(entry.size)}, licence: {entry.licence}) from {entry.url}",
        file=sys.stderr,
    )
    result = download_checkpoint(args.name, progress=progress, cancel=cancel)
    r = result.record
    print(f"Downloaded {r.name} ({r.model_type}, {r.family}) -> {result.path}")
    print(f"sha256 {r.sha256}")
    for note in result.notes:
        print(f"note: {note}")
    return EXIT_OK
