"""Tests of SAMFewShotLib.propagation.working_grid: crops and working-resolution resampling."""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.metrics import dice
from SAMFewShotLib.propagation.working_grid import (
    WorkingGrid,
    grown_box,
    occupied_slices,
    working_shape,
)


def disc(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def test_grown_box_holds_every_mask_plus_a_margin_in_mm():
    a = np.zeros((100, 120), bool)
    b = np.zeros((100, 120), bool)
    a[40:50, 30:40] = True
    b[45:60, 50:70] = True
    rows, cols = grown_box([a, b], spacing=(0.5, 2.0), fraction=0.0, min_mm=10.0)
    # 10 mm = 20 rows of 0.5 mm, 5 columns of 2 mm, around rows 40..59 and columns 30..69.
    assert (rows.start, rows.stop) == (20, 80) and (cols.start, cols.stop) == (25, 75)


def test_grown_box_stays_inside_the_slice_and_rejects_empty_masks():
    mask = np.zeros((30, 30), bool)
    mask[0:5, 25:30] = True
    rows, cols = grown_box([mask], spacing=(1.0, 1.0))
    assert rows.start == 0 and cols.stop == 30
    with pytest.raises(ValueError, match="non-empty"):
        grown_box([np.zeros((4, 4), bool)], spacing=(1.0, 1.0))


def test_fine_pixels_are_resampled_and_coarse_ones_are_not():
    assert working_shape((400, 300), (0.6, 0.6), 1.2) == (200, 150)
    assert working_shape((100, 80), (3.0, 3.0), 1.2) == (100, 80)
    # Pixels only slightly finer than the working size are left alone.
    assert working_shape((100, 80), (1.1, 1.1), 1.2) == (100, 80)


def test_a_grid_keeps_the_physical_size_of_its_crop():
    grid = WorkingGrid.around((slice(10, 410), slice(0, 300)), (0.6, 0.7), 1.2)
    assert grid.shape == (200, 175) and grid.resampled
    assert grid.spacing == pytest.approx((1.2, 1.2))
    identity = WorkingGrid.around((slice(0, 50), slice(5, 45)), (3.0, 3.0), 1.2)
    assert not identity.resampled and identity.spacing == (3.0, 3.0)


def test_a_mask_down_and_its_probability_back_up_keep_the_shape_in_place():
    full = np.zeros((240, 260), bool)
    full[:] = disc(full.shape, (130, 110), 60)
    crop = (slice(40, 220), slice(30, 200))
    grid = WorkingGrid.around(crop, (0.6, 0.6), 1.2)
    working = grid.mask(full[crop])
    assert working.shape == grid.shape == (90, 85)
    assert working.sum() == pytest.approx(full.sum() / 4, rel=0.03)
    back = grid.upsample(working.astype(np.float32)) > 0.5
    assert back.shape == (180, 170)
    assert dice(back[None], full[crop][None]) > 0.98


def test_upsampling_a_stack_leaves_empty_slices_at_zero():
    grid = WorkingGrid.around((slice(0, 40), slice(0, 40)), (0.5, 0.5), 1.0)
    stack = np.zeros((3, 20, 20), np.float32)
    stack[1, 5:15, 5:15] = 1.0
    up = grid.upsample(stack)
    assert up.shape == (3, 40, 40) and up.dtype == np.float32
    assert not up[0].any() and not up[2].any() and up[1].max() == 1.0


def test_a_working_stack_is_area_averaged_slice_by_slice():
    grid = WorkingGrid.around((slice(0, 4), slice(0, 4)), (0.5, 0.5), 1.0)
    stack = np.arange(2 * 4 * 4, dtype=np.int16).reshape(2, 4, 4)
    out = grid.stack(stack)
    assert out.shape == (2, 2, 2) and out.dtype == np.float32
    assert out[1, 0, 0] == pytest.approx(stack[1, :2, :2].mean())


def test_occupied_slices():
    stack = np.zeros((6, 3, 3), np.float32)
    assert occupied_slices(stack) == slice(0, 0)
    stack[2, 1, 1] = stack[4, 0, 0] = 0.3
    assert occupied_slices(stack) == slice(2, 5)
