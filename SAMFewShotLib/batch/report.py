"""The batch QC report: ``qc.csv`` (one row per case and label) and ``qc.html`` (a static page
with the same numbers, the flags highlighted and each case's montage). Both are written
atomically into the output folder; paths in them are relative to it.
"""

from __future__ import annotations

import csv
import html
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..volume_io import atomic_write
from .case_task import CaseResult

CSV_COLUMNS = (
    "case", "status", "label", "name", "volume_ml", "components", "flags", "seconds", "output", "montage", "error",
)


def _relative(path: str | None, out_dir: Path) -> str:
    if not path:
        return ""
    return Path(os.path.relpath(path, out_dir)).as_posix()


def csv_rows(results: Sequence[CaseResult], flags: Mapping[tuple[str, int], list[str]], out_dir: Path) -> list[dict]:
    """One row per case and label (one row with an empty label for a case without labels or a
    failed case); ``seconds`` is the segmentation time (the earlier run's for skipped cases)."""
    rows = []
    for result in results:
        base: dict[str, object] = {
            "case": result.case,
            "status": result.status,
            "seconds": "" if result.compute_seconds is None else f"{result.compute_seconds:.2f}",
            "output": _relative(result.outputs[0] if result.outputs else None, out_dir),
            "montage": _relative(result.montage, out_dir),
            "error": result.error or "",
        }
        if not result.labels:
            rows.append(dict(base, label="", name="", volume_ml="", components="", flags=""))
        for s in result.labels:
            rows.append(dict(
                base, label=s.value, name=s.name, volume_ml=f"{s.volume_ml:.3f}", components=s.components,
                flags="; ".join(flags.get((result.case, s.value), [])),
            ))
    return rows


def _html(results: Sequence[CaseResult], flags: Mapping[tuple[str, int], list[str]], out_dir: Path) -> str:
    esc = html.escape
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    flagged = len({case for case, _ in flags})
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>SAMFewShot batch QC</title><style>",
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;vertical-align:top;text-align:left}"
        ".failed{background:#fdd}.flag{color:#b00;font-weight:bold}img{max-height:180px}",
        "</style></head><body><h1>Batch QC</h1>",
        f"<p>{len(results)} cases: {counts['done']} done, {counts['skipped']} skipped (already done), "
        f"{counts['failed']} failed; {flagged} with flags. Volumes in mL; components with 26-connectivity.</p>",
        "<table><tr><th>case</th><th>status</th><th>seconds</th><th>labels</th>"
        "<th>montage (axial, coronal, sagittal)</th></tr>",
    ]
    for result in results:
        seconds = "" if result.compute_seconds is None else f"{result.compute_seconds:.1f}"
        if result.status == "failed":
            detail = f"<span class='flag'>{esc(result.error or '')}</span>"
        else:
            lines = ["<table><tr><th>label</th><th>mL</th><th>components</th><th>flags</th></tr>"]
            for s in result.labels:
                text = "; ".join(flags.get((result.case, s.value), []))
                lines.append(
                    f"<tr><td>{s.value} {esc(s.name)}</td><td>{s.volume_ml:.2f}</td><td>{s.components}</td>"
                    f"<td class='flag'>{esc(text)}</td></tr>"
                )
            detail = "".join(lines) + "</table>"
        montage = _relative(result.montage, out_dir)
        picture = (
            f"<a href='{esc(montage)}'><img src='{esc(montage)}' alt='montage of {esc(result.case)}'></a>"
            if montage
            else ""
        )
        output = _relative(result.outputs[0] if result.outputs else None, out_dir)
        linked = output and result.status != "failed"
        name = f"<a href='{esc(output)}'>{esc(result.case)}</a>" if linked else esc(result.case)
        row_class = " class='failed'" if result.status == "failed" else ""
        parts.append(
            f"<tr{row_class}><td>{name}</td><td>{result.status}</td><td>{seconds}</td><td>{detail}</td><td>{picture}</td></tr>"
        )
    parts.append("</table></body></html>\n")
    return "\n".join(parts)


def write_report(
    out_dir: str | Path, results: Sequence[CaseResult], flags: Mapping[tuple[str, int], list[str]]
) -> tuple[Path, Path]:
    """Write ``qc.csv`` and ``qc.html`` into ``out_dir`` (atomically); returns their paths.

    Args:
        results: one result per case, in the order to list them.
        flags: :func:`~SAMFewShotLib.batch.qc.cohort_flags` of the cohort.
    """
    folder = Path(out_dir)
    resolved = folder.resolve()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(results, flags, resolved))
    csv_path, html_path = folder / "qc.csv", folder / "qc.html"
    atomic_write(csv_path, ".csv", lambda temp: Path(temp).write_text(buffer.getvalue()))
    page = _html(results, flags, resolved)
    atomic_write(html_path, ".html", lambda temp: Path(temp).write_text(page))
    return csv_path, html_path
