"""The network's cube grid: resampling images and labels in and labels back out."""

import numpy as np
import pytest

pytest.importorskip("torch")

from SAMFewShotLib.atlas.rrl.cube import (
    cube_grid,
    cube_tensor,
    image_to_cube,
    labels_from_cube,
    labels_to_cube,
    one_hot,
)
from SAMFewShotLib.volume import LabelVolume, Segment, Volume

DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _volume(shape=(20, 30, 40)):
    rng = np.random.default_rng(0)
    return Volume(rng.normal(size=shape).astype(np.float32), (0.8, 1.2, 2.5), (10.0, -5.0, 3.0), DIRECTION)


def _corners(volume: Volume) -> np.ndarray:
    """Physical positions of the outer corners of the first and last voxels (edge to edge)."""
    nz, ny, nx = volume.shape
    lo = -0.5 * np.ones(3)
    hi = np.array([nx, ny, nz]) - 0.5
    d, s, o = volume.direction_matrix, np.array(volume.spacing), np.array(volume.origin)
    return np.stack([o + d @ (lo * s), o + d @ (hi * s)])


def test_cube_covers_the_same_physical_box_with_the_same_direction():
    volume = _volume()
    cube = cube_grid(volume, 32)
    assert cube.shape == (32, 32, 32)
    assert cube.direction == volume.direction
    np.testing.assert_allclose(_corners(cube), _corners(volume), atol=1e-9)


def test_image_to_cube_is_exact_on_a_cube_grid_and_smooth_when_shrinking():
    cube = image_to_cube(_volume((32, 32, 32)), 32)
    np.testing.assert_allclose(cube.array, _volume((32, 32, 32)).array, atol=1e-5)
    shrunk = image_to_cube(_volume((64, 64, 64)), 32)
    assert shrunk.array.std() < 0.5 * _volume((64, 64, 64)).array.std()  # anti-aliased noise


def test_labels_go_to_the_cube_and_back_onto_the_image_grid():
    volume = _volume((16, 24, 32))
    array = np.zeros(volume.shape, np.uint8)
    array[4:12, 6:18, 8:24] = 3
    labels = LabelVolume(volume.with_array(array), (Segment(3, "box", (1.0, 0.0, 0.0)),))
    cube = labels_to_cube(labels, 32)
    assert cube.array.dtype == np.uint8 and set(np.unique(cube.array)) == {0, 3}
    back = labels_from_cube(cube, volume)
    assert back.volume.same_grid(volume)
    assert back.segments == labels.segments
    np.testing.assert_array_equal(back.array, array)


def test_cube_tensor_normalises_and_one_hot_orders_classes():
    volume = _volume((32, 32, 32))
    tensor, cube = cube_tensor(volume, 32, {"method": "clip", "low": -1.0, "high": 1.0})
    assert tuple(tensor.shape) == (1, 1, 32, 32, 32) and 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0
    assert cube.same_grid(cube_grid(volume, 32))
    encoded = one_hot(np.array([[[0, 5, 7, 9]]]), [5, 7])
    assert encoded.shape == (1, 3, 1, 1, 4)
    assert encoded[0, :, 0, 0].argmax(0).tolist() == [0, 1, 2, 0]


def test_cube_size_must_be_at_least_two():
    with pytest.raises(ValueError, match="size"):
        cube_grid(_volume(), 1)
