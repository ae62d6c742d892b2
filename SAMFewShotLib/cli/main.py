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

    samfewshot --debug COMMAND ...   (an internal error prints its traceback)

Exit codes: 0 success; 2 bad input: an :class:`~SAMFewShotLib.errors.InputError` or an
``OSError`` (one line on stderr naming the problem, nothing written, inputs untouched); 130
cancelled (Ctrl-C or SIGTERM); 1 an internal error (a bug): one line on stderr, the traceback on
stderr under ``--debug`` and, when the command has ``--report PATH``, in that report (key
``traceback``); 3 (batch only) at least one case failed.
Results are written only after the whole computation succeeded, atomically.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from typing import Sequence

from ..errors import InputError
from ..progress import Cancelled, CancelToken, make_progress
from .atlas import add_atlas_parser
from .batch import add_batch_parser
from .bench import add_bench_parser
from .demo import add_demo_parser
from .exit_codes import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILURE
from .fewshot import add_fewshot_parser
from .meta import add_meta_parser
from .propagate import add_propagate_parser
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
    except BrokenPipeError:  # stdout closed by the reader (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except (InputError, OSError) as error:
        print(f"samfewshot: error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (Cancelled, KeyboardInterrupt):
        cancel.cancel()
        print("samfewshot: cancelled, nothing written", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as error:  # a bug: exit 1, the traceback under --debug and in the report
        return _internal_error(args, error)
    finally:
        close = getattr(progress, "close", None)
        if close is not None:
            close()


if __name__ == "__main__":
    sys.exit(main())
