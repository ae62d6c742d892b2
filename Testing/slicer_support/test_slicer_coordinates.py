"""Tests of slicer_support/coordinates.py: RAS <-> LPS, and Slicer's (k, j, i) array + IJKToRAS
matrix <-> Volume, through files written with volume_io and read back.

Slicer's rule (vtkMRMLVolumeNode): RAS of voxel (i, j, k) = IJKToRAS @ (i, j, k, 1), and the voxel's
value is ``arrayFromVolume(node)[k, j, i]``. Each case is an IJKToRAS matrix as Slicer would hold it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from SAMFewShotLib.slicer_support.coordinates import (
    LPS_TO_RAS,
    ijk_to_ras_matrix,
    lps_to_ras,
    ras_to_lps,
    volume_from_ijk_to_ras,
)
from SAMFewShotLib.volume import Volume
from SAMFewShotLib.volume_io import read_volume, write_volume

SHAPE = (5, 6, 7)  # (k, j, i) = (z, y, x)


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rz @ Ry @ Rx, angles in degrees (a proper rotation)."""
    ax, ay, az = map(math.radians, (ax, ay, az))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def affine(axes: np.ndarray, spacing, origin) -> np.ndarray:
    """4x4 IJKToRAS with RAS axis directions ``axes`` (columns), spacing (i, j, k) mm and origin (RAS mm)."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(axes, float) * np.asarray(spacing, float)[np.newaxis, :]
    matrix[:3, 3] = origin
    return matrix


CASES = {
    # An LPS-identity file loaded in Slicer: i -> Left (-R), j -> Posterior (-A), k -> Superior.
    "axial_lps_file": affine(np.diag([-1.0, -1.0, 1.0]), (0.8, 0.9, 2.5), (10.5, -22.25, 100.0)),
    # i -> Right, j -> Anterior (a RAS-identity NIfTI).
    "ras_identity": affine(np.eye(3), (0.7, 1.1, 3.0), (-5.0, 7.0, -40.0)),
    "oblique": affine(rotation(15, -10, 20), (0.8, 0.9, 2.5), (-12.3, 45.6, 78.9)),
    # One axis flipped: a left-handed index frame.
    "flipped_left_handed": affine(np.diag([1.0, -1.0, 1.0]), (1.0, 1.2, 2.0), (3.0, 4.0, 5.0)),
    "oblique_flipped": affine(rotation(30, 0, -25) @ np.diag([1.0, 1.0, -1.0]), (0.6, 0.6, 4.0), (1.5, -2.5, 60.0)),
    # A sagittal acquisition: i -> Anterior, j -> Superior (down), k -> Right.
    "sagittal_permuted": affine(np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]]), (1.0, 1.0, 3.3), (-80.0, -100.0, 90.0)),
}


def slicer_array(seed: int = 0) -> np.ndarray:
    """(k, j, i) int16 voxel values, all different."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.prod(SHAPE)).reshape(SHAPE).astype(np.int16)


def test_ras_lps_points():
    ras = np.array([[1.0, 2.0, 3.0], [-4.5, 0.0, 6.25]])
    lps = ras_to_lps(ras)
    np.testing.assert_array_equal(lps, [[-1.0, -2.0, 3.0], [4.5, -0.0, 6.25]])
    np.testing.assert_array_equal(lps_to_ras(lps), ras)
    np.testing.assert_array_equal(ras, [[1.0, 2.0, 3.0], [-4.5, 0.0, 6.25]])  # input untouched
    np.testing.assert_array_equal(ras_to_lps([1, 2, 3]), [-1.0, -2.0, 3.0])
    assert ras_to_lps(np.zeros((0, 3))).shape == (0, 3)
    homogeneous = LPS_TO_RAS @ np.array([-1.0, -2.0, 3.0, 1.0])
    np.testing.assert_array_equal(homogeneous[:3], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("points", [np.zeros((4, 2)), np.zeros(4), np.zeros((2, 3, 3))])
def test_ras_lps_points_reject_bad_shapes(points):
    with pytest.raises(ValueError, match="shape"):
        ras_to_lps(points)
    with pytest.raises(ValueError, match="shape"):
        lps_to_ras(points)


def test_lps_file_geometry_is_the_identity_direction():
    volume = volume_from_ijk_to_ras(slicer_array(), CASES["axial_lps_file"])
    assert volume.spacing == (0.8, 0.9, 2.5)
    assert volume.origin == (-10.5, 22.25, 100.0)
    assert volume.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip(case):
    matrix, array = CASES[case], slicer_array()
    volume = volume_from_ijk_to_ras(array, matrix)
    assert volume.array is array and volume.shape == SHAPE  # (k, j, i) = (z, y, x): used as is
    back = ijk_to_ras_matrix(volume)
    np.testing.assert_allclose(back, matrix, rtol=0, atol=1e-12)
    if np.count_nonzero(matrix[:3, :3]) == 3:  # axis-aligned: exact to the bit
        np.testing.assert_array_equal(back, matrix)
    again = volume_from_ijk_to_ras(array, back)
    assert again.same_grid(volume, tolerance=1e-12)
    # RAS <-> LPS is a half turn about z: handedness is kept (left-handed cases stay left-handed).
    handedness = np.linalg.det(matrix[:3, :3]) / np.prod(volume.spacing)
    np.testing.assert_allclose(np.linalg.det(volume.direction_matrix), handedness, rtol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("extension, atol", [(".nrrd", 1e-12), (".mha", 1e-12), (".nii.gz", 1e-5)])
def test_written_file_puts_every_voxel_where_slicer_does(case, extension, atol, tmp_path):
    """write_volume + read back: voxel (i, j, k) has Slicer's RAS position and value array[k, j, i].
    NIfTI stores its affine in float32, hence the looser tolerance."""
    matrix, array = CASES[case], slicer_array()
    path = tmp_path / f"volume{extension}"
    write_volume(volume_from_ijk_to_ras(array, matrix), path)
    image, volume = sitk.ReadImage(str(path)), read_volume(path)
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(ijk_to_ras_matrix(volume), matrix, rtol=0, atol=atol)
    nk, nj, ni = SHAPE
    for i, j, k in [(0, 0, 0), (ni - 1, 0, 0), (0, nj - 1, 0), (0, 0, nk - 1), (ni - 1, nj - 1, nk - 1), (3, 2, 1)]:
        slicer_ras = (matrix @ [i, j, k, 1.0])[:3]
        file_ras = lps_to_ras(image.TransformIndexToPhysicalPoint((i, j, k)))
        np.testing.assert_allclose(file_ras, slicer_ras, rtol=0, atol=atol * 10)
        assert image[i, j, k] == array[k, j, i] == volume.array[k, j, i]
        # and back: the RAS point lands on the same voxel index
        assert image.TransformPhysicalPointToIndex(tuple(ras_to_lps(slicer_ras))) == (i, j, k)


def test_ijk_to_ras_of_a_volume_read_from_a_file():
    volume = Volume(np.zeros(SHAPE, np.uint8), spacing=(2.0, 3.0, 4.0), origin=(1.0, 2.0, 3.0))
    expected = np.array([[-2.0, 0, 0, -1.0], [0, -3.0, 0, -2.0], [0, 0, 4.0, 3.0], [0, 0, 0, 1.0]])
    np.testing.assert_array_equal(ijk_to_ras_matrix(volume), expected)


@pytest.mark.parametrize(
    "array, matrix, message",
    [
        (np.zeros((4, 5)), np.eye(4), "3D"),
        (np.zeros((2, 4, 5, 3)), np.eye(4), "3D"),
        (np.zeros(SHAPE), np.eye(3), "4x4"),
        (np.zeros(SHAPE), np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1.0]]), "last row"),
        (np.zeros(SHAPE), np.diag([1.0, np.nan, 1.0, 1.0]), "finite"),
        (np.zeros(SHAPE), np.diag([1.0, 0.0, 1.0, 1.0]), "Degenerate"),
    ],
)
def test_volume_from_ijk_to_ras_rejects_bad_input(array, matrix, message):
    with pytest.raises(ValueError, match=message):
        volume_from_ijk_to_ras(array, matrix)
