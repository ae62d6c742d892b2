"""What the Slicer module shows of a ``samfewshot propagate --report`` JSON object.

The report (written by ``SAMFewShotLib.cli``) holds the ``engine`` and, per label value as a
string key, ``expected_dice`` (from the ``auto`` engine's leave-one-drawn-slice-out validation,
``engines/expected_dice.py``), ``annotated_slices`` and ``slice_confidence`` (one value in [0, 1]
or null per slice along the annotated axis).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..engines.catalog import engine_family


def summarize_report(report: Mapping, label_value: int = 1) -> tuple[float | None, list[tuple[int, float]]]:
    """Expected Dice and per-slice confidence of one label.

    Args:
        report: the ``--report`` JSON object (see :func:`~.progress_lines.read_report`).
        label_value: the label whose numbers are wanted (the module propagates label 1).

    Returns:
        ``(expected Dice or None, [(slice index, confidence)])``: the slices where the engine
        predicts something or has evidence (confidence > 0), lowest confidence first (ties by
        slice index). Slice indices are along the annotated axis (``report["axis"]``, a numpy
        axis of the (z, y, x) array).
    """
    key = str(label_value)
    expected_dice = (report.get("expected_dice") or {}).get(key)
    confidences = (report.get("slice_confidence") or {}).get(key) or []
    slices = [(index, float(value)) for index, value in enumerate(confidences) if value is not None and value > 0]
    slices.sort(key=lambda item: (item[1], item[0]))
    return (None if expected_dice is None else float(expected_dice)), slices


def expected_dice_text(report: Mapping, segment_name: str, label_value: int = 1) -> str:
    """The line shown with a result about one structure's expected Dice: the estimate, or why
    there is none (one drawn slice: draw more; an engine that does not estimate it: use auto).

    Args:
        report: the ``--report`` JSON object.
        segment_name: the structure's name as the user knows it.
        label_value: its label in the report (the module propagates label 1).
    """
    expected, _ = summarize_report(report, label_value)
    head = f"Expected Dice of '{segment_name}'"
    if expected is not None:
        return f"{head}: {expected:.2f} (estimated by auto from the drawn slices)"
    engine = str(report.get("engine") or "")
    if engine_family(engine) != "auto":
        return f"{head}: not estimated by engine {engine or '?'} (the auto engine estimates it)"
    drawn = len((report.get("annotated_slices") or {}).get(str(label_value)) or [])
    one = " from one drawn slice" if drawn == 1 else ""
    return f"{head}: not estimated{one}: draw 3+ slices (auto checks each against the others)"
