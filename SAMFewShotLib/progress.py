"""Progress reporting and cancellation for long work.

Engines call ``progress(stage, done, total)`` as they go and ``cancel.raise_if_cancelled()``
between units of work. The command line turns progress into a tqdm bar, one JSON object per
line (``{"stage": ..., "done": ..., "total": ...}``, what the Slicer module reads), or nothing.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, Callable, Protocol, TextIO

from .errors import InputError


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None: ...


def no_progress(stage: str, done: int, total: int) -> None:
    """A progress callback that reports nothing."""


class Cancelled(Exception):
    """Raised inside long work when its :class:`CancelToken` was cancelled."""


class CancelToken:
    """A thread-safe flag that long work polls between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


def report_event(progress: Progress, name: str, fields: dict) -> None:
    """Tell the progress display about something that is not a stage's count (e.g. the SAM
    encoder budget before encoding): displays with an ``event(name, fields)`` method show it,
    others ignore it. ``fields`` are JSON-ready; ``fields["message"]`` is the line for people."""
    event = getattr(progress, "event", None)
    if callable(event):
        event(name, fields)


class JsonLinesProgress:
    """Writes one JSON object per progress call: ``{"stage", "done", "total"}``, and one
    ``{"event": name, **fields}`` per :func:`report_event` (no "stage": progress readers skip it)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.stream.write(json.dumps({"stage": stage, "done": int(done), "total": int(total)}) + "\n")
        self.stream.flush()

    def event(self, name: str, fields: dict) -> None:
        from .files import json_safe

        self.stream.write(json.dumps({"event": name, **json_safe(fields)}) + "\n")
        self.stream.flush()


class TqdmProgress:
    """One tqdm bar per stage, on stderr."""

    def __init__(self) -> None:
        self._bar: Any = None  # a tqdm bar (tqdm is imported on first use)
        self._stage: str | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self._stage or self._bar is None:
            self.close()
            self._stage = stage
            self._bar = tqdm(total=total, desc=stage, unit="step", leave=False, file=sys.stderr)
        if self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        self._bar.refresh()
        if done >= total:
            self.close()

    def event(self, name: str, fields: dict) -> None:
        self.close()
        sys.stderr.write(f"{name}: {fields.get('message', '')}\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._stage = None


def make_progress(kind: str) -> Callable[[str, int, int], None]:
    """The progress callback for ``--progress bar|json|none``."""
    if kind == "bar":
        return TqdmProgress()
    if kind == "json":
        return JsonLinesProgress()
    if kind == "none":
        return no_progress
    raise InputError(f"Progress must be one of bar, json, none, not {kind!r}")


def add_progress_argument(parser) -> None:
    """Add ``--progress bar|json|none`` (see :func:`make_progress`) to an argparse parser."""
    parser.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        default="bar",
        help="progress display: tqdm bar on stderr, one JSON object per line on stdout, or none",
    )
