"""Messages third-party C++ libraries print: ITK, GDCM and MetaIO write warnings straight to the
process's stderr (file descriptor 2), bypassing Python. :func:`captured_native_stderr` catches
them around a call so that the command line keeps its one-line contract; what was caught is kept
in :func:`library_notices` for the command to summarise (one line) or put in its report.

Core layer: imports nothing from the package.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_NOTICES: list[str] = []
_MAX_NOTICES = 200


@contextmanager
def captured_native_stderr() -> Iterator[list[str]]:
    """Redirect file descriptor 2 (and SimpleITK's warning display) to a private file while the
    block runs; yields a list that holds the non-empty lines written once the block has ended.
    The lines are also appended to :func:`library_notices`."""
    lines: list[str] = []
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    saved = os.dup(2)
    sink = tempfile.TemporaryFile()
    display = _sitk_warning_display(False)
    os.dup2(sink.fileno(), 2)
    try:
        yield lines
    finally:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        if display is not None:
            _sitk_warning_display(display)
        sink.seek(0)
        text = sink.read().decode("utf-8", "replace")
        sink.close()
        lines.extend(line.strip() for line in text.splitlines() if line.strip())
        _NOTICES.extend(lines[: max(0, _MAX_NOTICES - len(_NOTICES))])


def _sitk_warning_display(on: bool) -> bool | None:
    """Set SimpleITK's global warning display when SimpleITK is loaded; the previous setting."""
    sitk = sys.modules.get("SimpleITK")
    if sitk is None:
        return None
    try:
        before = bool(sitk.ProcessObject.GetGlobalWarningDisplay())
        sitk.ProcessObject.SetGlobalWarningDisplay(on)
        return before
    except AttributeError:
        return None


def library_notices() -> list[str]:
    """Lines third-party libraries printed inside :func:`captured_native_stderr` so far."""
    return list(_NOTICES)


def clear_library_notices() -> None:
    """Forget the collected notices (at the start of a command)."""
    _NOTICES.clear()
