"""Per-case records: what makes a case "done" and lets a second run skip it.

After a case's outputs are in place, ``DIR/records/<case>.json`` is written (atomically, last):
the case's input files with their size and modification time, the model digest, the outputs,
the QC statistics and the seconds the case took. A case is done when its record exists, names
the same inputs with the same size and mtime, the same model digest, and every output asked for
exists. A record is only ever written after the outputs it names, so a record implies complete
outputs; a case interrupted before its record is computed again.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..files import write_json_atomic

#: Bumped when the record layout changes (older records are then not trusted).
RECORD_VERSION = 1
#: Output file suffix of each ``--format`` value.
FORMAT_SUFFIXES = {"seg.nrrd": ".seg.nrrd", "nii.gz": ".nii.gz"}


def output_paths(out_dir: str | Path, case_id: str, formats: tuple[str, ...]) -> list[Path]:
    """The label-map files of a case, one per format (``seg.nrrd``, ``nii.gz``), in ``out_dir``."""
    unknown = [f for f in formats if f not in FORMAT_SUFFIXES]
    if unknown or not formats:
        raise InputError(f"Formats must be among {', '.join(FORMAT_SUFFIXES)}, not {formats!r}")
    return [Path(out_dir) / f"{case_id}{FORMAT_SUFFIXES[f]}" for f in formats]


def record_path(out_dir: str | Path, case_id: str) -> Path:
    """``DIR/records/<case_id>.json``."""
    return Path(out_dir) / "records" / f"{case_id}.json"


def write_record(out_dir: str | Path, case_id: str, record: dict) -> Path:
    """Write a case's record atomically (call it after every output of the case is in place)."""
    path = record_path(out_dir, case_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(str(path), dict(record, version=RECORD_VERSION, case=case_id))
    return path


def read_record(out_dir: str | Path, case_id: str) -> dict | None:
    """The case's record, or None when absent, unreadable or of another version."""
    try:
        record = json.loads(record_path(out_dir, case_id).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == RECORD_VERSION else None


def completed_record(
    out_dir: str | Path, case_id: str, signature: list[dict], model_digest: str, formats: tuple[str, ...]
) -> dict | None:
    """The case's record when the case is done for these inputs, model and formats, else None.

    Args:
        signature: :func:`~SAMFewShotLib.batch.inputs.input_signature` of the case now.
        model_digest: the model's digest (weights/files and options).
        formats: the output formats asked for; each must have been written.
    """
    record = read_record(out_dir, case_id)
    if record is None or record.get("inputs") != signature or record.get("model") != model_digest:
        return None
    written = set(record.get("outputs", []))
    wanted = [p.name for p in output_paths(out_dir, case_id, formats)]
    if not all(name in written and (Path(out_dir) / name).is_file() for name in wanted):
        return None
    return record
