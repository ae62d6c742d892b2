"""Stitching slices into SAM-sized mosaics and back (SAMFewShotLib.sfr.stitching)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")  # the sfr extra

from SAMFewShotLib.sam.preprocess import Preprocessing
from SAMFewShotLib.sfr.stitching import (
    content_shape,
    default_grid,
    plan_mosaics,
    stitch,
    stitch_image,
    unstitch,
    unstitch_volume,
)
from SAMFewShotLib.volume import Volume


def _labels(shape, seed=0, values=4):
    return np.random.default_rng(seed).integers(0, values, size=shape).astype(np.uint8)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_label_round_trip_is_exact_with_anisotropic_pixels_and_odd_counts(axis):
    # 7 slices along z (odd; 3x3 grid leaves blank tiles), 2.5 mm z, 0.8 x 1.1 mm in plane
    volume = Volume(_labels((7, 23, 31)), spacing=(1.1, 0.8, 2.5))
    grid = default_grid(volume, axis)
    layouts = plan_mosaics(volume, axis, grid)
    mosaics = [stitch(volume.array, layout, linear=False) for layout in layouts]
    assert all(m.shape == (1024, 1024) and m.dtype == np.uint8 for m in mosaics)
    back = unstitch_volume(mosaics, layouts, volume.shape, linear=False)
    np.testing.assert_array_equal(back, volume.array)


def test_blank_tiles_are_flagged_and_zero():
    volume = Volume(np.ones((5, 16, 16), dtype=np.uint8))
    (layout,) = plan_mosaics(volume, 0, 3)
    assert layout.blank == (False,) * 5 + (True,) * 4
    mosaic = stitch(volume.array, layout, linear=False)
    assert mosaic.sum() == 5 * layout.content_shape[0] * layout.content_shape[1]
    r0, c0, r1, c1 = layout.tile_box(5)
    assert not mosaic[r0:r1, c0:c1].any()
    slices, indices = unstitch(mosaic, layout, linear=False)
    assert indices.tolist() == [0, 1, 2, 3, 4] and slices.shape == (5, 16, 16)


def test_content_keeps_the_physical_aspect_and_pads_bottom_right():
    # 10 rows of 3 mm (30 mm) x 20 cols of 1 mm (20 mm): content is taller than wide
    assert content_shape((10, 20), (3.0, 1.0), 512) == (512, 341)
    volume = Volume(np.ones((2, 10, 20), dtype=np.uint8), spacing=(1.0, 3.0, 1.0))
    (layout,) = plan_mosaics(volume, 0, 2)
    mosaic = stitch(volume.array, layout, linear=False)
    assert mosaic[:512, :341].all() and not mosaic[:512, 341:512].any()


def test_probability_round_trip_is_close_and_keeps_channels():
    rng = np.random.default_rng(1)
    volume = Volume(rng.random((4, 12, 9)), spacing=(1.0, 1.0, 2.0))
    (layout,) = plan_mosaics(volume, 0, 2)
    channels = np.stack([stitch(volume.array, layout, linear=True)] * 2)
    slices, indices = unstitch(channels, layout, linear=True)
    assert slices.shape == (4, 2, 12, 9)
    np.testing.assert_allclose(slices[:, 0], volume.array[indices], atol=0.15)


def test_image_mosaic_is_windowed_rgb_with_zero_blank_tiles():
    volume = Volume(np.full((3, 8, 8), 100.0))
    (layout,) = plan_mosaics(volume, 0, 2)
    image = stitch_image(volume, layout, Preprocessing("custom", 0.0, 200.0))
    assert image.shape == (1024, 1024, 3) and image.dtype == np.uint8
    assert image[0, 0, 0] == 128 and image[1023, 1023, 0] == 0


def test_default_grid_never_down_samples():
    volume = Volume(np.zeros((4, 300, 300)))
    assert default_grid(volume, 0) == 3  # 341-pixel tiles hold 300 pixels; 4 x 256 would not
    assert default_grid(Volume(np.zeros((4, 2000, 10))), 0) == 1


def test_bad_arguments_are_refused():
    volume = Volume(np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match="Axis"):
        plan_mosaics(volume, 3, 2)
    with pytest.raises(ValueError, match="grid"):
        plan_mosaics(volume, 0, 0)
    (layout,) = plan_mosaics(volume, 0, 2)
    with pytest.raises(ValueError, match="mosaic must be"):
        unstitch(np.zeros((10, 10)), layout, linear=False)
