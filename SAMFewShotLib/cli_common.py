"""What every ``samfewshot`` subcommand shares: exit codes, the user-error type, JSON reports.

Subcommand modules (cli_atlas.py, cli_batch.py, ...) import from here, not from cli.py, which
imports them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130


class UserError(ValueError):
    """Bad input detected by the command itself."""


def json_safe(value):
    """Numpy scalars/arrays to Python, non-finite floats to None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_report_path(path: str | None) -> None:
    """UserError unless ``path`` (when given) can be written as a file."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(f"Report path {path} is a folder, not a file")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"Report folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"Report folder {folder} is not writable")


def write_json_atomic(path: str, payload: dict) -> None:
    """Write ``payload`` as indented JSON through a temporary file and a rename."""
    target = Path(path)
    temp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        temp.write_text(json.dumps(json_safe(payload), indent=2) + "\n")
        os.replace(temp, target)
    finally:
        if temp.exists():
            temp.unlink()


def check_outputs_differ(output: str, inputs: Sequence[str]) -> None:
    """UserError when ``output`` is one of the ``inputs`` (same file, however spelled)."""
    from .volume_io import same_file

    for given in inputs:
        if same_file(output, given):
            raise UserError(f"Output path {output} is the input {given}: choose another output")


def check_output_and_report(output: str, report: str | None, inputs: Sequence[str]) -> None:
    """UserError for a report path that cannot be written, or an output or report that is one of
    the ``inputs`` (or a report that is the output)."""
    check_report_path(report)
    check_outputs_differ(output, inputs)
    if report:
        check_outputs_differ(report, [*inputs, output])
