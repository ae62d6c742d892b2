"""What the Slicer module shows of a ``samfewshot propagate --report`` JSON object.

The report (written by ``SAMFewShotLib.cli``) holds, per label value as a string key,
``expected_dice`` (from the ``auto`` engine's leave-one-drawn-slice-out validation) and
``slice_confidence`` (one value in [0, 1] or null per slice along the annotated axis).
"""

from __future__ import annotations

from collections.abc import Mapping


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
