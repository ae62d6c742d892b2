"""Keeping the module's (segmentation, segment) pair consistent.

Slicer's ``qMRMLSegmentSelectorWidget`` emits ``currentSegmentChanged`` before
``currentNodeChanged`` when the user switches segmentation, so a handler that stores the segment
ID alone can pair the new segment with the old segmentation (Propagate then fails with "Segment
... is not in segmentation"). Both handlers store the pair read from the selector at once, and
only a segment ID that belongs to the segmentation.
"""

from __future__ import annotations

from typing import Sequence


def consistent_segment_id(segment_ids: Sequence[str], wanted: str | None) -> str:
    """``wanted`` when it is a segment of the segmentation (``segment_ids``), else its first
    segment, else "" (no segmentation or an empty one)."""
    ids = [str(s) for s in segment_ids]
    if wanted and wanted in ids:
        return wanted
    return ids[0] if ids else ""
