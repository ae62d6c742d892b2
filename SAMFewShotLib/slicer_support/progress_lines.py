"""Reading what a ``samfewshot ... --progress json`` child reports.

The child writes one JSON object per line on stdout, ``{"stage": str, "done": int, "total": int}``
(:class:`SAMFewShotLib.progress.JsonLinesProgress`); stages look like ``"register: label 5"``.
Anything else on stdout (the ``suggest`` answer, stray prints) is not progress and is skipped by
:func:`parse_progress_line`. At the end ``--report PATH`` holds a JSON object (:func:`read_report`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class ProgressEvent:
    """One progress line.

    Attributes:
        stage: what is running (``"register: label 5"``).
        done: units of work finished (>= 0).
        total: units of work in the stage (>= 0; 0 = unknown).
    """

    stage: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        """done / total clipped to [0, 1]; 0 when the total is unknown (0)."""
        if self.total <= 0:
            return 0.0
        return min(1.0, max(0.0, self.done / self.total))


def _count(value) -> int | None:
    """A non-negative integer count from JSON (int, or a float holding an integer), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        return None
    return int(value) if value >= 0 else None


def json_object_line(line: str) -> dict | None:
    """The JSON object one stdout line holds, or None (not a string, not ``{...}``, not valid
    JSON, or JSON that is not an object). Never raises."""
    if not isinstance(line, str):
        return None
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def parse_json_output(output: str | Mapping, what: str) -> Mapping:
    """The JSON object a child printed (``weights list --json``, ``atlas info --json``), or the
    already parsed object as is.

    Raises:
        ValueError: ``"The <what> is not JSON (...)"`` or ``"The <what> must be a JSON object, not list"``.
    """
    payload = output
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as error:
            raise ValueError(f"The {what} is not JSON ({error})") from None
    if not isinstance(payload, Mapping):
        raise ValueError(f"The {what} must be a JSON object, not {type(payload).__name__}")
    return payload


def parse_progress_line(line: str) -> ProgressEvent | None:
    """The event of one stdout line, or None when the line is not a progress line.

    Never raises: non-JSON text, JSON that is not an object, a missing or non-string ``stage``,
    and ``done``/``total`` that are not non-negative integers all give None.
    """
    payload = json_object_line(line)
    if payload is None:
        return None
    stage, done, total = payload.get("stage"), _count(payload.get("done")), _count(payload.get("total"))
    if not isinstance(stage, str) or done is None or total is None:
        return None
    return ProgressEvent(stage=stage, done=done, total=total)


def format_elapsed(seconds: float) -> str:
    """``m:ss`` below an hour, ``h:mm:ss`` above (``12.7`` -> ``"0:12"``, ``3725`` -> ``"1:02:05"``)."""
    whole = int(max(0.0, seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressTracker:
    """The latest event of every stage, the current stage and the elapsed time.

    ``clock`` (seconds, monotonic) is injectable for tests. The clock starts at construction
    and again at :meth:`restart`.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.restart()

    def restart(self) -> None:
        """Forget every event and start the elapsed time again."""
        self._start = self._clock()
        self._latest: dict[str, ProgressEvent] = {}
        self._current: str | None = None

    def update(self, event: ProgressEvent) -> None:
        """Record an event; its stage becomes the current stage."""
        self._latest.pop(event.stage, None)  # keep the dict in order of last update
        self._latest[event.stage] = event
        self._current = event.stage

    @property
    def current_stage(self) -> str | None:
        """The stage of the latest event (None before the first)."""
        return self._current

    @property
    def stages(self) -> list[str]:
        """Every stage seen, least recently updated first."""
        return list(self._latest)

    def latest(self, stage: str | None = None) -> ProgressEvent | None:
        """The latest event of ``stage`` (default: the current stage), or None."""
        stage = self._current if stage is None else stage
        return None if stage is None else self._latest.get(stage)

    def fraction(self, stage: str | None = None) -> float:
        """done / total of ``stage`` (default: the current stage) in [0, 1]; 0 when unseen."""
        event = self.latest(stage)
        return 0.0 if event is None else event.fraction

    @property
    def elapsed_seconds(self) -> float:
        return self._clock() - self._start

    def status_text(self) -> str:
        """``"register: label 5 - 40/112 (0:12 elapsed)"``; ``"starting (0:01 elapsed)"`` before
        the first event; the count is left out when the total is unknown (0)."""
        elapsed = f"({format_elapsed(self.elapsed_seconds)} elapsed)"
        event = self.latest()
        if event is None:
            return f"starting {elapsed}"
        count = f" - {event.done}/{event.total}" if event.total > 0 else ""
        return f"{event.stage}{count} {elapsed}"


def read_report(path: str | os.PathLike) -> dict:
    """The ``--report`` JSON object of a finished ``samfewshot propagate``.

    Raises:
        ValueError: the file is missing, unreadable, not JSON or not a JSON object (one line
            naming the path).
    """
    report = Path(path)
    if not report.is_file():
        raise ValueError(f"Report {report} does not exist or is not a file (the run did not finish?)")
    try:
        text = report.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"Report {report} cannot be read ({error})") from None
    try:
        payload = json.loads(text)
    except ValueError as error:
        raise ValueError(f"Report {report} is not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"Report {report} must hold a JSON object, not {type(payload).__name__}")
    return payload
