"""Which slice view shows an annotated axis, and where a slice lies, in Slicer's terms.

Slicer shows three slice views: Red (axial: its normal is S), Yellow (sagittal: normal R) and
Green (coronal: normal A). A volume's numpy array is (k, j, i); numpy axis ``a`` runs along the
voxel index ``2 - a`` of the IJKToRAS matrix, whose column ``2 - a`` is that axis's direction in
RAS. The view that pages through the slices of numpy axis ``a`` is the one whose normal is the
RAS axis that column points along most. A slice's position is shown the way Slicer's slice
slider shows it: the RAS coordinate along the view's normal, in mm ("S 12.5 mm"), never as a
0-based array index.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Slice view that pages along each RAS axis (R, A, S): sagittal, coronal, axial.
VIEW_OF_RAS_AXIS = ("Yellow", "Green", "Red")
#: The letter Slicer's slice slider shows for a positive offset along R, A, S.
RAS_LETTERS = ("R", "A", "S")
#: ... and for a negative one (Left, Posterior, Inferior).
NEGATIVE_RAS_LETTERS = ("L", "P", "I")


def _matrix(ijk_to_ras) -> np.ndarray:
    matrix = np.asarray(ijk_to_ras, dtype=float)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"IJKToRAS must be a finite 4x4 matrix, not {matrix.tolist()}")
    return matrix


def _check_axis(numpy_axis: int) -> int:
    if isinstance(numpy_axis, bool) or numpy_axis not in (0, 1, 2):
        raise ValueError(f"Numpy axis must be 0, 1 or 2, not {numpy_axis!r}")
    return int(numpy_axis)


def normal_ras_axis(ijk_to_ras, numpy_axis: int) -> int:
    """The RAS axis (0 = R, 1 = A, 2 = S) that numpy axis ``numpy_axis`` of the (k, j, i) array
    runs along most (largest absolute component of its IJKToRAS column)."""
    column = _matrix(ijk_to_ras)[:3, 2 - _check_axis(numpy_axis)]
    if not np.any(column):
        raise ValueError(f"IJKToRAS column {2 - numpy_axis} is zero")
    return int(np.argmax(np.abs(column)))


def view_for_axis(ijk_to_ras, numpy_axis: int) -> str:
    """``"Red"``, ``"Yellow"`` or ``"Green"``: the slice view that pages through numpy axis
    ``numpy_axis`` (e.g. axis 0 of an axial CT -> ``"Red"``; of a sagittal MR -> ``"Yellow"``)."""
    return VIEW_OF_RAS_AXIS[normal_ras_axis(ijk_to_ras, numpy_axis)]


def slice_center_ras(ijk_to_ras, dimensions_ijk: Sequence[int], numpy_axis: int, index: int) -> tuple:
    """RAS position (mm) of the centre of slice ``index`` along numpy axis ``numpy_axis``.

    Args:
        ijk_to_ras: 4x4 matrix taking (i, j, k, 1) to RAS mm.
        dimensions_ijk: (i, j, k) voxel counts (``imageData.GetDimensions()``).
    """
    axis = _check_axis(numpy_axis)
    dimensions = [int(size) for size in dimensions_ijk]
    if len(dimensions) != 3 or min(dimensions) < 1:
        raise ValueError(f"Dimensions must be three positive voxel counts (i, j, k), not {dimensions_ijk!r}")
    count = dimensions[2 - axis]
    if isinstance(index, bool) or int(index) != index or not 0 <= index < count:
        raise ValueError(f"Slice index must be in [0, {count - 1}], not {index!r}")
    ijk = [(size - 1) / 2.0 for size in dimensions]
    ijk[2 - axis] = float(index)
    ras = _matrix(ijk_to_ras) @ np.array([*ijk, 1.0])
    return float(ras[0]), float(ras[1]), float(ras[2])


def slice_offset_mm(ijk_to_ras, dimensions_ijk: Sequence[int], numpy_axis: int, index: int) -> float:
    """The slice offset Slicer's slider shows for slice ``index`` in :func:`view_for_axis`'s
    view: its RAS coordinate (mm) along the view's normal."""
    ras = slice_center_ras(ijk_to_ras, dimensions_ijk, numpy_axis, index)
    return ras[normal_ras_axis(ijk_to_ras, numpy_axis)]


def format_offset(ijk_to_ras, numpy_axis: int, offset_mm: float) -> str:
    """``"S 12.5 mm"``, ``"I 3.0 mm"``, ``"R 40.2 mm"``: an offset as Slicer's slider writes it."""
    ras_axis = normal_ras_axis(ijk_to_ras, numpy_axis)
    letter = RAS_LETTERS[ras_axis] if offset_mm >= 0 else NEGATIVE_RAS_LETTERS[ras_axis]
    return f"{letter} {abs(offset_mm):.1f} mm"


def next_slice(slices: Sequence[int], current: int | None, step: int = 1) -> int | None:
    """The next slice of ``slices`` after ``current`` (``step`` = -1: before it), wrapping
    around; the first (last) one when ``current`` is None or not past any; None when empty.

    Used by "next low-confidence slice": ``slices`` are array indices along the annotated axis.
    """
    ordered = sorted({int(s) for s in slices})
    if not ordered:
        return None
    if step not in (1, -1):
        raise ValueError(f"Step must be 1 or -1, not {step!r}")
    if current is None:
        return ordered[0] if step == 1 else ordered[-1]
    if step == 1:
        later = [s for s in ordered if s > current]
        return later[0] if later else ordered[0]
    earlier = [s for s in ordered if s < current]
    return earlier[-1] if earlier else ordered[-1]
