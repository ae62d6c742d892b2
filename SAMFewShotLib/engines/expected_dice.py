"""The Dice ``auto`` expects on the whole structure, from its leave-one-drawn-slice-out validation.

Leaving a drawn slice out doubles the gap it is predicted across: with drawn slices g apart, the
validation predicts each left-out slice from g slices away (the outermost ones by extrapolation),
whereas in the final result no slice is more than about g / 2 from a drawn one, and the drawn
slices themselves are exact. The mean validation Dice is therefore the Dice of the worst slices
(and one extrapolation that stopped early can drag it to 0), not the Dice of the structure.

Model: chained slice-to-slice propagation keeps a fraction q of the overlap per slice of
distance, so a propagated slice d slices from the nearest drawn slice has Dice ``D(d) = q ** d``.
Each validated slice i, predicted from d_i slices away with Dice D_i, gives
``q_i = max(D_i, DICE_FLOOR) ** (1 / d_i)``; q is their median (robust to a single failed
extrapolation; a Dice of 0 only says the overlap was lost within d_i slices, so it counts as
:data:`DICE_FLOOR`). The expected Dice of the structure is the mean of D over its slices weighted
by the predicted area of each slice (the 3D Dice is a voxel sum), drawn slices counting D = 1.
Nothing is fitted on a benchmark: q comes from the structure's own drawn slices. With fewer than
two drawn slices there is nothing to validate and no estimate (None).

What it cannot see: where the structure really ends. A result that runs on past the
structure's last slice (on the benchmark CT, the aorta's runs 8 slices past the reference's
end) costs Dice that no drawn slice shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: The Dice a validated slice counts with at least: 0 (the overlap lost somewhere within d_i slices)
#: would make every propagated slice 0.
DICE_FLOOR = 0.01


def nearest_distances(n_slices: int, drawn: Sequence[int]) -> np.ndarray:
    """(n_slices,) float: each slice's distance, in slices, to the nearest of ``drawn`` (non-empty)."""
    positions = np.asarray(sorted(drawn), dtype=np.int64)
    if positions.size == 0:
        raise ValueError("At least one drawn slice is needed")
    index = np.arange(n_slices)
    return np.abs(index[:, None] - positions[None, :]).min(axis=1).astype(np.float64)


def retention(drawn: Sequence[int], validation: Mapping[int, float]) -> float | None:
    """The median fraction of overlap kept per slice of distance, ``median(D_i ** (1 / d_i))``,
    over the validated slices (``validation``: {left-out drawn slice: Dice of its prediction from
    the other drawn slices}); d_i is the distance to the nearest other drawn slice and D_i is at
    least :data:`DICE_FLOOR`. None when nothing was validated."""
    kept = []
    for left_out, score in validation.items():
        others = [s for s in drawn if s != left_out]
        if not others:
            continue
        distance = min(abs(left_out - s) for s in others)
        if distance > 0:
            kept.append(max(float(score), DICE_FLOOR) ** (1.0 / distance))
    return float(np.median(kept)) if kept else None


def slice_areas(probability: np.ndarray, box: tuple[slice, ...] | None, n_slices: int) -> np.ndarray:
    """(n_slices,) voxel counts of ``probability > 0.5`` per canonical slice, where ``probability``
    covers ``box`` of the canonical volume (None = all of it), as in ``LabelProbability``."""
    areas = np.zeros(n_slices, np.float64)
    start = 0 if box is None else box[0].indices(n_slices)[0]
    counts = np.count_nonzero((probability > 0.5).reshape(probability.shape[0], -1), axis=1)
    areas[start:start + counts.size] = counts
    return areas


def expected_dice(drawn: Sequence[int], validation: Mapping[int, float], areas: np.ndarray) -> float | None:
    """The structure's expected Dice (module docstring).

    Args:
        drawn: the drawn slices (indices along the annotated axis).
        validation: {left-out drawn slice: Dice of its prediction from the other drawn slices}.
        areas: (n_slices,) predicted voxels per slice along the annotated axis
            (:func:`slice_areas`).

    Returns:
        The area-weighted mean of ``q ** d`` in [0, 1], or None without validation or without
        predicted voxels.
    """
    kept = retention(drawn, validation)
    weights = np.asarray(areas, np.float64)
    if kept is None or not drawn or weights.sum() <= 0:
        return None
    per_slice = kept ** nearest_distances(weights.size, drawn)
    return float(np.sum(weights * per_slice) / np.sum(weights))
