"""Tests of slicer_support/slice_views.py: which slice view shows an annotated axis, slice
positions as Slicer's slice offsets in mm, and "next low-confidence slice"."""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.slicer_support.slice_views import (
    format_offset,
    next_slice,
    slice_center_ras,
    slice_offset_mm,
    view_for_axis,
)

#: An axial CT as Slicer loads it: i -> L (RAS x negated), j -> P, k -> S; 0.7 x 0.7 x 2.5 mm.
AXIAL = np.array([[-0.7, 0, 0, 100.0], [0, -0.7, 0, 80.0], [0, 0, 2.5, -200.0], [0, 0, 0, 1]])
#: A sagittal MR: i -> A, j -> S (down the rows: -S), k -> R.
SAGITTAL = np.array([[0, 0, 1.2, -60.0], [1.0, 0, 0, -90.0], [0, -1.0, 0, 120.0], [0, 0, 0, 1]])
#: A coronal acquisition: k runs along A.
CORONAL = np.array([[1.0, 0, 0, 0], [0, 0, 3.0, -50.0], [0, 1.0, 0, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize(
    "matrix, numpy_axis, view",
    [(AXIAL, 0, "Red"), (AXIAL, 1, "Green"), (AXIAL, 2, "Yellow"),
     (SAGITTAL, 0, "Yellow"), (SAGITTAL, 1, "Red"), (SAGITTAL, 2, "Green"), (CORONAL, 0, "Green")],
)
def test_the_view_pages_along_the_annotated_axis(matrix, numpy_axis, view):
    assert view_for_axis(matrix, numpy_axis) == view


def test_slice_centre_and_offset_in_mm():
    dims = (512, 512, 100)  # (i, j, k)
    r, a, s = slice_center_ras(AXIAL, dims, 0, 10)
    assert s == pytest.approx(-200.0 + 2.5 * 10)
    assert r == pytest.approx(100.0 - 0.7 * 255.5) and a == pytest.approx(80.0 - 0.7 * 255.5)
    assert slice_offset_mm(AXIAL, dims, 0, 10) == pytest.approx(-175.0)
    # sagittal MR: numpy axis 0 = k runs along R; the Yellow slider shows R
    assert slice_offset_mm(SAGITTAL, (256, 256, 160), 0, 50) == pytest.approx(-60.0 + 1.2 * 50)


def test_offset_text_is_slicers_not_an_index():
    assert format_offset(AXIAL, 0, -175.0) == "I 175.0 mm"
    assert format_offset(AXIAL, 0, 12.34) == "S 12.3 mm"
    assert format_offset(SAGITTAL, 0, 4.0) == "R 4.0 mm"
    assert format_offset(SAGITTAL, 0, -4.0) == "L 4.0 mm"


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="Numpy axis"):
        view_for_axis(AXIAL, 3)
    with pytest.raises(ValueError, match=r"Slice index must be in \[0, 99\], not 100"):
        slice_center_ras(AXIAL, (512, 512, 100), 0, 100)
    with pytest.raises(ValueError, match="4x4"):
        view_for_axis(np.eye(3), 0)


def test_next_low_confidence_slice_wraps_both_ways():
    slices = [40, 12, 25]
    assert next_slice(slices, None) == 12
    assert next_slice(slices, 12) == 25
    assert next_slice(slices, 30) == 40
    assert next_slice(slices, 40) == 12  # wraps
    assert next_slice(slices, 25, step=-1) == 12
    assert next_slice(slices, 12, step=-1) == 40
    assert next_slice([], 5) is None
