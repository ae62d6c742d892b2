"""The per-case lines of ``samfewshot batch --progress json`` and the status table built from them.

Besides the progress lines ``{"stage", "done", "total"}``, the batch writes exactly one line per
case as it finishes::

    {"case": str, "status": "done" | "failed" | "skipped", "seconds": float,
     "output": str | null, "error": str | null}

:func:`parse_case_line` reads one line (None for anything else), :class:`CaseTable` keeps the
latest status of every case in order of first appearance (what the Batch panel's table shows).
Scene volumes are exported under :func:`unique_case_names` so that each case id names its volume.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .progress_lines import json_object_line

#: Statuses of a finished case.
CASE_STATUSES = ("done", "failed", "skipped")
#: Status of a case that was submitted but has not finished.
PENDING = "pending"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class CaseStatus:
    """One case of a batch.

    Attributes:
        case: the case id (file-name safe; outputs are ``<case>.seg.nrrd``).
        status: ``done``, ``failed``, ``skipped`` or :data:`PENDING`.
        seconds: wall time of the case (0 when pending or skipped without work).
        output: the written label file (None when failed or pending).
        error: the one-line reason of a failure (None otherwise).
    """

    case: str
    status: str
    seconds: float = 0.0
    output: str | None = None
    error: str | None = None

    @property
    def loadable(self) -> bool:
        """Whether the case has a result file to load (done, or skipped because it exists)."""
        return self.status in ("done", "skipped") and bool(self.output)

    def cells(self) -> tuple[str, str, str, str]:
        """(case, status, seconds, output or error) as the table shows them."""
        seconds = f"{self.seconds:.1f}" if self.status in ("done", "failed") else ""
        detail = self.error if self.status == "failed" else (self.output or "")
        return self.case, self.status, seconds, detail or ""


def parse_case_line(line: str) -> CaseStatus | None:
    """The :class:`CaseStatus` of one stdout line, or None when it is not a per-case line.

    Never raises: text that is not a JSON object, or an object without a string ``case`` and a
    known ``status``, gives None. ``seconds`` that is missing or not a finite number >= 0 reads
    as 0; ``output`` / ``error`` that are not strings read as None.
    """
    payload = json_object_line(line)
    if payload is None:
        return None
    case, status = payload.get("case"), payload.get("status")
    if not isinstance(case, str) or not case or status not in CASE_STATUSES:
        return None
    seconds = payload.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        seconds = 0.0
    output, error = payload.get("output"), payload.get("error")
    return CaseStatus(
        case=case,
        status=status,
        seconds=float(seconds),
        output=output if isinstance(output, str) and output else None,
        error=error if isinstance(error, str) and error else None,
    )


class CaseTable:
    """The latest :class:`CaseStatus` of every case, in order of first appearance.

    Args:
        cases: case ids known before the run starts (shown as :data:`PENDING`).
    """

    def __init__(self, cases: Iterable[str] = ()) -> None:
        self._rows: dict[str, CaseStatus] = {}
        for case in cases:
            self._rows.setdefault(case, CaseStatus(case=case, status=PENDING))

    def update(self, lines: Iterable[str]) -> list[CaseStatus]:
        """Record the per-case lines among ``lines`` (others are ignored); returns the new statuses."""
        changed = []
        for line in lines:
            status = parse_case_line(line)
            if status is not None:
                self._rows[status.case] = status
                changed.append(status)
        return changed

    @property
    def rows(self) -> list[CaseStatus]:
        return list(self._rows.values())

    def row_index(self, case: str) -> int:
        """Position of ``case`` in :attr:`rows` (ValueError when unknown)."""
        for index, name in enumerate(self._rows):
            if name == case:
                return index
        raise ValueError(f"Case must be one of the table's cases, not {case!r}")

    def counts(self) -> dict[str, int]:
        """How many cases have each status (every status of :data:`CASE_STATUSES` and pending)."""
        counts = {status: 0 for status in CASE_STATUSES + (PENDING,)}
        for row in self._rows.values():
            counts[row.status] += 1
        return counts

    def summary(self) -> str:
        """``"3 done, 1 failed, 0 skipped, 2 pending"``."""
        return ", ".join(f"{count} {status}" for status, count in self.counts().items())

    def loadable(self) -> list[CaseStatus]:
        """The cases with a result file (:attr:`CaseStatus.loadable`), in table order."""
        return [row for row in self._rows.values() if row.loadable]


def unique_case_names(names: Sequence[str]) -> list[str]:
    """File-name-safe, unique (case-insensitively) stems for ``names`` (volume names), in order:
    characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``; repeats get
    ``_2``, ``_3``, ...; an empty result becomes ``volume``. Exported as ``<stem>.nrrd``, each
    volume's batch case id is its stem."""
    result: list[str] = []
    taken: set[str] = set()
    for name in names:
        stem = _UNSAFE.sub("_", str(name)).strip("._") or "volume"
        candidate, number = stem, 1
        while candidate.lower() in taken:
            number += 1
            candidate = f"{stem}_{number}"
        taken.add(candidate.lower())
        result.append(candidate)
    return result
