"""Known smooth random deformations: size, smoothness, and the direction they move things."""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.atlas.deformation import deform_case, smooth_random_field, warp_labels, warp_volume
from SAMFewShotLib.volume import LabelVolume, Volume
from Testing.atlas.atlas_phantom import phantom

FLIPPED = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def test_the_largest_displacement_is_the_one_asked_for():
    grid = Volume(np.zeros((20, 24, 28), np.float32), spacing=(2.0, 2.0, 3.0))
    field = smooth_random_field(grid, 7.5, control_spacing_mm=20.0, seed=3)
    assert field.shape == (20, 24, 28, 3)
    assert np.linalg.norm(field, axis=-1).max() == pytest.approx(7.5)


def test_fields_are_smooth_and_seeded():
    grid = Volume(np.zeros((30, 30, 30), np.float32), spacing=(2.0, 2.0, 2.0))
    field = smooth_random_field(grid, 10.0, control_spacing_mm=40.0, seed=1)
    # neighbouring voxels (2 mm apart) differ by a small fraction of the 10 mm maximum
    assert np.abs(np.diff(field, axis=0)).max() < 2.0
    np.testing.assert_array_equal(field, smooth_random_field(grid, 10.0, control_spacing_mm=40.0, seed=1))
    assert not np.allclose(field, smooth_random_field(grid, 10.0, control_spacing_mm=40.0, seed=2))


def test_a_constant_field_moves_content_the_other_way_in_physical_space():
    # warped(p) = original(p + d): content at q appears at q - d; on a grid flipped along x and z
    array = np.zeros((10, 10, 10), np.float32)
    array[5, 5, 5] = 100.0
    volume = Volume(array, spacing=(2.0, 2.0, 2.0), origin=(10.0, 0.0, 10.0), direction=FLIPPED)
    field = np.zeros((10, 10, 10, 3))
    field[..., 0] = 4.0  # +4 mm along physical x = -2 voxels along the flipped i axis
    warped = warp_volume(volume, field, default=0.0)
    assert np.unravel_index(int(np.argmax(warped.array)), warped.shape) == (5, 5, 7)


def test_labels_move_with_the_image_and_keep_their_values():
    image, labels = phantom((20, 24, 24), seed=2)
    target, truth = deform_case(image, labels, 6.0, control_spacing_mm=20.0, seed=4)
    assert target.same_grid(image) and truth.volume.same_grid(image) and truth.segments == labels.segments
    assert set(np.unique(truth.array)) <= set(np.unique(labels.array))
    assert target.array.dtype == image.array.dtype and truth.array.dtype == labels.array.dtype
    moved = (truth.array != labels.array).mean()
    assert 0.005 < moved < 0.2
    # the deformed image is bright where the deformed liver is
    assert target.array[truth.array == 1].mean() > 100 > target.array[truth.array == 0].mean()


def test_integer_images_stay_integer_and_the_field_must_fit_the_grid():
    volume = Volume(np.arange(64, dtype=np.int16).reshape(4, 4, 4))
    assert warp_volume(volume, np.zeros((4, 4, 4, 3))).array.dtype == np.int16
    np.testing.assert_array_equal(warp_volume(volume, np.zeros((4, 4, 4, 3))).array, volume.array)
    with pytest.raises(ValueError, match=r"must have shape \(4, 4, 4, 3\)"):
        warp_labels(LabelVolume(volume.with_array(np.zeros((4, 4, 4), np.uint8))), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="must be positive"):
        smooth_random_field(volume, 0.0)
