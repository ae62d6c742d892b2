"""Checks every subcommand makes on its output and report paths before any work."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError


def check_report_path(path: str | None, what: str = "Report") -> None:
    """InputError unless ``path`` (when given) can be written as a file; messages start with ``what``."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{what} path {path} is a folder, not a file")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{what} folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{what} folder {folder} is not writable")


def check_outputs_differ(output: str, inputs: Sequence[str]) -> None:
    """InputError when ``output`` is one of the ``inputs`` (same file, however spelled)."""
    from ..volume_io import same_file

    for given in inputs:
        if same_file(output, given):
            raise InputError(f"Output path {output} is the input {given}: choose another output")


def check_output_and_report(output: str, report: str | None, inputs: Sequence[str]) -> None:
    """InputError for a report path that cannot be written, or an output or report that is one of
    the ``inputs`` (or a report that is the output)."""
    check_report_path(report)
    check_outputs_differ(output, inputs)
    if report:
        check_outputs_differ(report, [*inputs, output])
