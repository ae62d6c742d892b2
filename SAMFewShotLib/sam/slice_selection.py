"""Which slices SAM should refine: all that the coarse mask covers, or only the uncertain ones
(``--sam-slices uncertain``), to encode fewer slices.

A slice of the coarse mask is uncertain when the coarse engine's per-slice confidence is low
(for ``register``: the soft Dice of the two chains between drawn slices, decaying with the
distance beyond them), or when the structure's area changes fast there (relative change to a
neighbouring slice above a limit: the structure's ends, branching, a chain that drifts). Elsewhere
the coarse mask is kept as it is and the slice costs no encoder call.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: Slice selections of ``--sam-slices``.
SAM_SLICES = ("all", "uncertain")
#: Below this per-slice confidence of the coarse engine, SAM refines the slice. ``register``'s
#: confidence is conservative: on the shared abdominal CT (k = 3) liver slices with coarse Dice
#: 0.93-0.96 had confidence 0.6-0.9, while its poor slices (Dice 0.2-0.8, the structure's ends)
#: had confidence < 0.5 or an area change > 0.2.
MIN_CONFIDENCE = 0.5
#: Above this relative area change to a neighbouring slice, SAM refines the slice.
MAX_AREA_CHANGE = 0.2


def area_change(coarse: np.ndarray) -> np.ndarray:
    """(n,) largest relative area change of each slice to its neighbours: ``|a_z - a_n| / max(a_z,
    a_n)`` over n = z - 1, z + 1 (0 where both are empty; a slice next to an empty one gives 1).

    Args:
        coarse: (n, rows, cols) bool coarse mask, slicing axis first.
    """
    area = coarse.reshape(coarse.shape[0], -1).sum(axis=1).astype(np.float64)
    change = np.zeros(len(area))
    for shift in (1, -1):
        neighbour = np.roll(area, shift)
        if shift == 1:
            neighbour[0] = area[0]  # no neighbour beyond the volume's ends
        else:
            neighbour[-1] = area[-1]
        larger = np.maximum(area, neighbour)
        with np.errstate(invalid="ignore", divide="ignore"):
            relative = np.where(larger > 0, np.abs(area - neighbour) / larger, 0.0)
        change = np.maximum(change, relative)
    return change


def uncertain_slices(
    coarse: np.ndarray,
    confidence: np.ndarray,
    candidates: Iterable[int],
    *,
    min_confidence: float = MIN_CONFIDENCE,
    max_area_change: float = MAX_AREA_CHANGE,
) -> list[int]:
    """The candidate slices SAM should refine: low coarse confidence or a fast area change.

    Args:
        coarse: (n, rows, cols) bool coarse mask, slicing axis first.
        confidence: (n,) the coarse engine's per-slice confidence in [0, 1].
        candidates: slice indices SAM could refine (covered by the coarse mask, not drawn).
        min_confidence: slices below it are uncertain.
        max_area_change: slices whose :func:`area_change` exceeds it are uncertain.

    Returns:
        Sorted slice indices, a subset of ``candidates``.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.shape != (coarse.shape[0],):
        raise ValueError(f"confidence must have shape ({coarse.shape[0]},), not {confidence.shape}")
    change = area_change(coarse)
    return sorted(
        int(z) for z in set(candidates) if confidence[z] < min_confidence or change[z] > max_area_change
    )


def check_sam_slices(value: str) -> str:
    """``value`` when it is one of :data:`SAM_SLICES`, else an input error naming it."""
    from ..errors import InputError

    if value not in SAM_SLICES:
        raise InputError(f"--sam-slices must be one of {', '.join(SAM_SLICES)}, not {value!r}")
    return value
