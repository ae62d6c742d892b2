"""The ``samfewshot`` command: the parser, signals and exit codes.

    samfewshot propagate IMAGE ANNOTATION -o OUT [--engine auto|interpolate|register|...]
                         [--axis auto|axial|coronal|sagittal] [--empty-slices SPEC]
                         [--progress bar|json|none] [--report PATH]
    samfewshot bench IMAGE REFERENCE --labels 5,1,... --k 1,3,5,10 --engines ... [--json OUT]
    samfewshot suggest IMAGE --k 5 [--range FIRST:LAST] [--axis axial]
    samfewshot demo [-o DIR]
    samfewshot weights list | import PATH [--name N] | verify [NAME] | download NAME
    samfewshot fewshot train|apply|info ...
    samfewshot meta-train LABELED_DIR -o INIT.pt --checkpoint C ...
    samfewshot atlas create|info|apply|train ...
    samfewshot batch INPUTS... --model MODEL -o DIR ...
    samfewshot sfr train|stitch ...

    samfewshot --debug COMMAND ...   (an internal error prints its traceback)

Exit codes: 0 success; 2 bad input (an :class:`~SAMFewShotLib.errors.InputError`) or a failed
read/write (an ``OSError``: full disk, read-only folder): one line on stderr naming the problem,
nothing written, inputs untouched; 130 cancelled (Ctrl-C or SIGTERM); 1 an internal error (a bug):
one line on stderr, the traceback on stderr under ``--debug`` and, when the command has
``--report PATH``, in that report (key ``traceback``); 3 (batch only) at least one case failed.
Results are written only after the whole computation succeeded, atomically; an output and its
``--report`` are written both or neither. Warnings of third-party libraries (Python warnings,
ITK/GDCM messages on stderr) are folded into one ``samfewshot: warning:`` line. Temporary files
(extracted atlases, transforms, worker scratch) live in one folder per command, removed on
every exit path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ..errors import InputError, TrainingDiverged
from ..files import deferred_outputs
from ..input_checks import MAX_VOXELS_ENV
from ..native_output import clear_library_notices, library_notices
from ..progress import Cancelled, CancelToken, make_progress
from .atlas import add_atlas_parser
from .batch import add_batch_parser
from .bench import add_bench_parser
from .demo import add_demo_parser
from .exit_codes import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILURE
from .fewshot import add_fewshot_parser
from .meta import add_meta_parser
from .propagate import add_propagate_parser
from .sfr import add_sfr_parser
from .suggest import add_suggest_parser
from .weights import add_weights_parser


class _ArgumentParser(argparse.ArgumentParser):
    """argparse keeping the bad-input contract: one line on stderr and exit 2, no usage block."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``samfewshot`` parser with every subcommand (imports no torch)."""
    parser = _ArgumentParser(
        prog="samfewshot",
        description="Few annotated slices or one atlas in, a full 3D segmentation out.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="on an internal error (exit 1) print the traceback on stderr"
    )
    parser.add_argument(
        "--max-voxels", type=float, default=None, metavar="N",
        help=f"refuse input images larger than N voxels (default: from the available memory; env {MAX_VOXELS_ENV})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_propagate_parser(sub)
    add_bench_parser(sub)
    add_suggest_parser(sub)
    add_demo_parser(sub)
    add_weights_parser(sub)
    add_fewshot_parser(sub)
    add_meta_parser(sub)
    add_atlas_parser(sub)
    add_batch_parser(sub)
    add_sfr_parser(sub)
    return parser


def one_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _internal_error(args: argparse.Namespace, error: Exception) -> int:
    """Report an unexpected exception (a bug): one line on stderr, the traceback on stderr under
    ``--debug`` and in the ``--report`` JSON when the command has one; returns exit code 1."""
    trace = traceback.format_exc()
    if args.debug:
        print(trace, end="", file=sys.stderr)
    report = getattr(args, "report", None)
    if report:
        from ..files import write_json_atomic

        try:
            write_json_atomic(report, {
                "command": args.command, "error": f"{type(error).__name__}: {one_line(error)}", "traceback": trace,
            })
        except OSError:  # the report folder vanished: the line on stderr still says what happened
            pass
    hint = "" if args.debug else " (run with --debug for the traceback)"
    print(f"samfewshot: internal error: {type(error).__name__}: {one_line(error)}{hint}", file=sys.stderr)
    return EXIT_FAILURE


#: Optional top-level packages -> the pyproject extra that installs them.
_EXTRAS = {
    "torch": "sam", "torchvision": "sam", "segment_anything": "sam", "mobile_sam": "sam", "timm": "sam",
    "platformdirs": "sam", "onnx": "onnx", "onnxruntime": "onnx", "nilearn": "demo", "dask": "dist",
    "distributed": "dist", "monai": "sfr",
}


def _extra_of(module: str | None) -> str:
    """The extra that installs ``module`` (``all`` when it is not one of the optional packages)."""
    return _EXTRAS.get((module or "").partition(".")[0], "all")


def _cancelled(cancel: CancelToken) -> int:
    """Mark the command cancelled and say so in one line; exit code 130."""
    cancel.cancel()
    print("samfewshot: cancelled, nothing written", file=sys.stderr)
    return EXIT_CANCELLED


@contextmanager
def command_temp_folder() -> Iterator[str]:
    """One private temporary folder for the whole command: ``tempfile`` and child processes
    (``TMPDIR``) put their files in it, and it is removed on every exit path (success, error,
    cancel), also of files left by worker processes that ended with ``os._exit``.

    multiprocessing's own folder (the fork server's socket, no data) is made first, outside: it
    lives as long as the process and multiprocessing removes it at exit."""
    import multiprocessing.util

    multiprocessing.util.get_temp_dir()
    folder = tempfile.mkdtemp(prefix="samfewshot-run-")
    saved_env, saved_dir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = folder
    tempfile.tempdir = folder
    try:
        yield folder
    finally:
        tempfile.tempdir = saved_dir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)


def _warning_line(caught: Sequence[warnings.WarningMessage]) -> str | None:
    """One line summarising third-party warnings and native library messages, or None."""
    messages: list[str] = []
    for item in caught:
        text = one_line(item.message) if isinstance(item.message, BaseException) else str(item.message).strip()
        text = text.splitlines()[0] if text else item.category.__name__
        if text not in messages:
            messages.append(text)
    for text in library_notices():
        if text not in messages:
            messages.append(text)
    if not messages:
        return None
    line = " | ".join(messages)
    return line if len(line) <= 400 else line[:397] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    if args.max_voxels is not None and args.max_voxels < 1:
        print(f"samfewshot: error: --max-voxels must be at least 1, not {args.max_voxels:g}", file=sys.stderr)
        return EXIT_BAD_INPUT
    saved_limit = os.environ.get(MAX_VOXELS_ENV)
    if args.max_voxels is not None:  # the environment carries it to worker processes too
        os.environ[MAX_VOXELS_ENV] = str(int(args.max_voxels))
    try:
        with command_temp_folder(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            clear_library_notices()
            code = _run(args)
            line = _warning_line(caught)
    finally:
        if saved_limit is None:
            os.environ.pop(MAX_VOXELS_ENV, None)
        else:
            os.environ[MAX_VOXELS_ENV] = saved_limit
    if line and code in (0, 3):
        print(f"samfewshot: warning: {line}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    cancel = CancelToken()

    def stop_on_signal(signum, frame) -> None:
        # The token first: a KeyboardInterrupt raised where Python swallows it (an at-fork hook
        # while a worker starts) still stops the run at the engine's next cancel check.
        cancel.cancel()  # whatever fails after this is the cancel's consequence, not a bug
        raise KeyboardInterrupt

    for name in ("SIGTERM", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop_on_signal)
    default_unraisable_hook = sys.unraisablehook

    def quiet_swallowed_cancel(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and cancel.cancelled:
            return  # the token carries that cancel; stderr keeps its one line
        default_unraisable_hook(unraisable)

    sys.unraisablehook = quiet_swallowed_cancel
    progress = make_progress(args.progress)
    both = (getattr(args, "output", None), getattr(args, "report", None))
    try:
        with deferred_outputs(both if all(both) else ()) as outputs:
            code = args.func(args, progress, cancel)
            outputs.commit()
            return code
    except BrokenPipeError:  # stdout closed by the reader (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except (InputError, OSError) as error:
        print(f"samfewshot: error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as error:  # an optional extra the command needs is not installed
        print(f"samfewshot: error: this command needs the Python package {error.name!r}, which is not installed "
              f"(pip install 'samfewshot[{_extra_of(error.name)}]')", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (Cancelled, KeyboardInterrupt):
        return _cancelled(cancel)
    except TrainingDiverged as error:  # not a bug: these data and settings made the loss explode
        print(f"samfewshot: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as error:
        if cancel.cancelled:  # a worker or child stopped by the same SIGTERM
            return _cancelled(cancel)
        return _internal_error(args, error)  # a bug: exit 1, the traceback under --debug and in the report
    finally:
        sys.unraisablehook = default_unraisable_hook
        close = getattr(progress, "close", None)
        if close is not None:
            close()


if __name__ == "__main__":
    sys.exit(main())
