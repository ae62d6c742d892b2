"""The propagation preview split into what the user drew and what the engine predicted.

The Segment Editor effect and the module show a propagated segment as three segments of one
preview segmentation, so drawn and predicted voxels can be told apart at a glance:

- ``drawn``: the annotated slices exactly as drawn (full fill);
- ``propagated``: predicted voxels on slices at or above the confidence threshold (outline,
  light fill);
- ``low confidence``: predicted voxels on slices below it (another colour, outline).

Their union is the result Apply writes. Arrays are (k, j, i) = (z, y, x), numpy axis order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

#: Default confidence under which a predicted slice is flagged.
DEFAULT_CONFIDENCE_THRESHOLD = 0.5


@dataclass(frozen=True)
class PreviewParts:
    """uint8 0/1 arrays of the same (k, j, i) shape; ``low_slices``: flagged slice indices along
    ``axis`` (ascending)."""

    drawn: np.ndarray
    propagated: np.ndarray
    low_confidence: np.ndarray
    axis: int
    low_slices: tuple

    def union(self) -> np.ndarray:
        """The whole result (what Apply writes), uint8 0/1."""
        return ((self.drawn > 0) | (self.propagated > 0) | (self.low_confidence > 0)).astype(np.uint8)


def drawn_slices(drawn: np.ndarray, axis: int) -> list:
    """Indices along ``axis`` of the slices holding any drawn voxel."""
    stack = np.moveaxis(np.asarray(drawn) > 0, axis, 0)
    return [int(i) for i in np.flatnonzero(stack.reshape(stack.shape[0], -1).any(axis=1))]


def low_confidence_slices(confidences: Sequence, threshold: float, exclude: Sequence[int] = ()) -> list:
    """Slices (indices into ``confidences``) whose confidence is below ``threshold``; slices
    with no value (None) and those in ``exclude`` (the drawn ones) are never flagged.

    Raises:
        ValueError: a threshold outside [0, 1].
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"Confidence threshold must be in [0, 1], not {threshold!r}")
    skip = {int(s) for s in exclude}
    return [i for i, value in enumerate(confidences) if value is not None and float(value) < threshold and i not in skip]


def report_confidences(report: Mapping, label_value: int = 1) -> list:
    """The per-slice confidence list of one label of a ``--report`` object ([] when absent)."""
    return list((report.get("slice_confidence") or {}).get(str(label_value)) or [])


def split_preview(labels: np.ndarray, drawn: np.ndarray, axis: int, confidences: Sequence = (),
                  threshold: float = DEFAULT_CONFIDENCE_THRESHOLD) -> PreviewParts:
    """Split a propagated mask into drawn / propagated / low-confidence parts.

    Args:
        labels: (k, j, i) result of the engine (nonzero = structure).
        drawn: (k, j, i) what the user drew (nonzero = structure), same shape.
        axis: the annotated numpy axis (the report's ``axis``).
        confidences: per-slice confidence along ``axis`` (None entries: no estimate).
        threshold: predicted slices below it are flagged (only slices with a prediction).

    Drawn slices are kept exactly as drawn: on them the part is ``drawn`` only.
    """
    labels = np.asarray(labels) > 0
    drawn_mask = np.asarray(drawn) > 0
    if labels.shape != drawn_mask.shape:
        raise ValueError(f"Result shape {labels.shape} differs from the drawn shape {drawn_mask.shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"Axis must be 0, 1 or 2, not {axis!r}")
    drawn_list = drawn_slices(drawn_mask, axis)
    predicted = labels.copy()
    view = np.moveaxis(predicted, axis, 0)
    view[drawn_list] = False  # drawn slices: exactly as drawn
    filled = view.reshape(view.shape[0], -1).any(axis=1)
    flagged = [s for s in low_confidence_slices(list(confidences)[: view.shape[0]], threshold, drawn_list) if filled[s]]
    low = np.zeros_like(predicted)
    np.moveaxis(low, axis, 0)[flagged] = view[flagged]
    view[flagged] = False
    drawn_part = np.zeros_like(drawn_mask)
    np.moveaxis(drawn_part, axis, 0)[drawn_list] = np.moveaxis(drawn_mask, axis, 0)[drawn_list]
    return PreviewParts(drawn=drawn_part.astype(np.uint8), propagated=predicted.astype(np.uint8),
                        low_confidence=low.astype(np.uint8), axis=int(axis), low_slices=tuple(flagged))
