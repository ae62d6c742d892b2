"""Tests of SAMFewShotLib.volume: Volume, Segment, LabelVolume and label_dtype."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from SAMFewShotLib.volume import GRID_TOLERANCE, LabelVolume, Segment, Volume, label_dtype

SPACING = (0.7, 0.9, 3.0)  # (x, y, z) mm
ORIGIN = (-12.5, 30.25, 101.75)
OBLIQUE = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


def make_volume(dtype=np.int16, direction=OBLIQUE) -> Volume:
    array = np.arange(2 * 3 * 4, dtype=dtype).reshape(2, 3, 4)  # (z, y, x)
    return Volume(array, spacing=SPACING, origin=ORIGIN, direction=direction)


# Volume ------------------------------------------------------------------------------------------
def test_volume_defaults_are_the_identity_grid():
    volume = Volume(np.zeros((2, 3, 4)))
    assert volume.spacing == (1.0, 1.0, 1.0)
    assert volume.origin == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(volume.direction_matrix, np.eye(3))


def test_volume_geometry_is_stored_as_float_tuples():
    volume = Volume(np.zeros((2, 3, 4)), spacing=np.array([1, 2, 3]), origin=[0, 1, 2])
    assert volume.spacing == (1.0, 2.0, 3.0) and isinstance(volume.spacing[0], float)
    assert volume.origin == (0.0, 1.0, 2.0)


@pytest.mark.parametrize("shape", [(3, 4), (1, 2, 3, 4)])
def test_volume_must_be_3d(shape):
    with pytest.raises(ValueError, match="must be 3D"):
        Volume(np.zeros(shape))


def test_volume_geometry_must_be_3d():
    with pytest.raises(ValueError, match="Geometry must be 3D"):
        Volume(np.zeros((2, 3, 4)), spacing=(1.0, 1.0))


@pytest.mark.parametrize("spacing", [(1.0, 0.0, 1.0), (1.0, 1.0, -2.0)])
def test_volume_spacing_must_be_positive(spacing):
    with pytest.raises(ValueError, match="Spacing must be positive"):
        Volume(np.zeros((2, 3, 4)), spacing=spacing)


def test_shape_is_zyx_and_spacing_zyx_is_reversed():
    volume = make_volume()
    assert volume.shape == (2, 3, 4)
    assert volume.spacing_zyx == (3.0, 0.9, 0.7)


def test_direction_matrix_is_row_major():
    matrix = make_volume().direction_matrix
    assert matrix.shape == (3, 3)
    np.testing.assert_array_equal(matrix[:, 0], (0.0, 1.0, 0.0))  # index axis x points along P


def test_with_array_keeps_geometry():
    volume = make_volume()
    other = volume.with_array(np.ones((2, 3, 4), np.uint8))
    assert other.array.dtype == np.uint8
    assert other.same_grid(volume)


def test_with_array_rejects_a_new_shape():
    with pytest.raises(ValueError, match=r"Array shape \(3, 3, 4\)"):
        make_volume().with_array(np.zeros((3, 3, 4)))


def test_same_grid_tolerates_small_differences_only():
    volume = make_volume()
    close = Volume(volume.array, SPACING, tuple(o + GRID_TOLERANCE / 2 for o in ORIGIN), OBLIQUE)
    far = Volume(volume.array, SPACING, (ORIGIN[0] + 0.01,) + ORIGIN[1:], OBLIQUE)
    assert volume.same_grid(close)
    assert not volume.same_grid(far)
    assert not volume.same_grid(Volume(np.zeros((2, 3, 5)), SPACING, ORIGIN, OBLIQUE))


def test_grid_text_names_size_spacing_origin():
    text = make_volume().grid_text()
    assert "size 4x3x2 (x,y,z)" in text
    assert "spacing (0.7, 0.9, 3) mm" in text
    assert "origin (-12.5, 30.25, 101.75) mm" in text


def test_sitk_round_trip_is_lossless():
    volume = make_volume()
    image = volume.to_sitk()
    assert image.GetSize() == (4, 3, 2)
    assert image.GetSpacing() == SPACING
    back = Volume.from_sitk(image)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.array.dtype == volume.array.dtype
    assert back.spacing == volume.spacing and back.origin == volume.origin and back.direction == volume.direction


def test_to_sitk_maps_numpy_index_to_physical_point():
    volume = make_volume()
    image = volume.to_sitk()
    z, y, x = 1, 2, 3
    expected = np.asarray(ORIGIN) + volume.direction_matrix @ (np.asarray(SPACING) * (x, y, z))
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((x, y, z)), expected)
    assert image[x, y, z] == volume.array[z, y, x]


def test_from_sitk_rejects_2d():
    with pytest.raises(ValueError, match="Expected a 3D image"):
        Volume.from_sitk(sitk.Image(4, 3, sitk.sitkUInt8))


def test_from_sitk_rejects_vector_images():
    with pytest.raises(ValueError, match="3 components"):
        Volume.from_sitk(sitk.Image([4, 3, 2], sitk.sitkVectorFloat32, 3))


# Segment / LabelVolume -----------------------------------------------------------------------------
def test_segment_display_name_defaults_to_its_value():
    assert Segment(4).display_name() == "Segment_4"
    assert Segment(4, "liver").display_name() == "liver"


def test_label_volume_rejects_float_arrays():
    with pytest.raises(ValueError, match="must hold integers, not float32"):
        LabelVolume(make_volume(np.float32))


def test_label_values_are_sorted_and_exclude_background():
    array = np.zeros((2, 3, 4), np.uint8)
    array[0, 0, 0], array[1, 2, 3] = 9, 2
    labels = LabelVolume(make_volume(np.uint8).with_array(array))
    assert labels.label_values() == [2, 9]


def test_segment_lookup_falls_back_to_a_default():
    labels = LabelVolume(make_volume(np.uint8), (Segment(1, "liver", (1.0, 0.0, 0.0)),))
    assert labels.segment(1).name == "liver"
    assert labels.segment(7) == Segment(7)


def test_label_with_array_keeps_or_replaces_segments():
    labels = LabelVolume(make_volume(np.uint8), (Segment(1, "liver"),))
    zeros = np.zeros((2, 3, 4), np.uint8)
    assert labels.with_array(zeros).segments == (Segment(1, "liver"),)
    assert labels.with_array(zeros, ()).segments == ()
    assert labels.with_array(zeros).volume.same_grid(labels.volume)


@pytest.mark.parametrize(
    "value, dtype", [(0, np.uint8), (255, np.uint8), (256, np.uint16), (65535, np.uint16), (65536, np.uint32)]
)
def test_label_dtype_is_the_smallest_unsigned(value, dtype):
    assert label_dtype(value) == np.dtype(dtype)


def test_label_dtype_rejects_huge_values():
    with pytest.raises(ValueError, match="too large"):
        label_dtype(2**32)
