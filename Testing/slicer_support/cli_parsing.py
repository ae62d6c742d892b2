"""Parse an argv of slicer_support with the real ``samfewshot`` argument parser."""

from __future__ import annotations

import pytest

from SAMFewShotLib.cli.main import build_parser

PYTHON = "/opt/Slicer 5.8/bin/PythonSlicer"  # a space in the path: argv needs no quoting


def parse(argv: list[str]):
    """The namespace the CLI's own parser makes of ``argv`` (after ``python -m SAMFewShotLib``);
    skips the test when the subcommand is not registered in this checkout yet."""
    assert argv[:3] == [PYTHON, "-m", "SAMFewShotLib"]
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    if argv[3] not in subcommands:
        pytest.skip(f"samfewshot {argv[3]} is not registered in SAMFewShotLib/cli.py yet")
    try:
        return parser.parse_args(argv[3:])
    except SystemExit as error:  # argparse's error exit: name the argv in the failure
        if argv[3] in ("atlas", "batch") and "invalid choice" in str(error):
            pytest.skip(f"samfewshot {' '.join(argv[3:5])} is not registered yet")
        raise AssertionError(f"samfewshot rejects {argv[3:]}") from error
