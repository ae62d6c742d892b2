"""Slicer's RAS world and the LPS files of SAMFewShotLib.

Slicer works in RAS (x grows towards the patient's Right, y Anterior, z Superior) and gives a
volume as ``slicer.util.arrayFromVolume(node)``, an array in (k, j, i) = (z, y, x) order, with
``node.GetIJKToRASMatrix(m)``, the 4x4 matrix taking a voxel index (i, j, k, 1) to RAS mm. Files
(NIfTI, NRRD, MHA as ITK reads them) and :class:`~SAMFewShotLib.volume.Volume` are in LPS (x grows
towards Left, y Posterior, z Superior). The two differ by ``diag(-1, -1, 1)``:
``RAS = diag(-1, -1, 1) @ LPS`` and back with the same matrix.

A :class:`Volume`'s array is already (z, y, x) = (k, j, i), so Slicer's array is used as is;
only the matrix changes frame: spacing = norms of the IJKToLPS columns, origin = LPS of voxel
(0, 0, 0), direction columns = LPS unit vectors of the i, j, k axes.
"""

from __future__ import annotations

import numpy as np

from ..volume import Volume
from ..volume_io import geometry_from_ijk_to_lps, ijk_to_lps_from_geometry

#: 4x4 homogeneous matrix taking LPS to RAS (and RAS to LPS: it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _points(points, what: str) -> np.ndarray:
    array = np.array(points, dtype=float)  # a copy: the caller's array is never changed
    if array.ndim not in (1, 2) or array.shape[-1] != 3:
        raise ValueError(f"{what} must be an (N, 3) array or one (3,) point, not of shape {array.shape}")
    return array


def ras_to_lps(points) -> np.ndarray:
    """LPS coordinates (mm) of RAS points.

    Args:
        points: (N, 3) array of (x, y, z) RAS positions in mm, or one (3,) point.

    Returns:
        float array of the same shape: x and y negated.
    """
    array = _points(points, "RAS points")
    array[..., :2] *= -1.0
    return array


def lps_to_ras(points) -> np.ndarray:
    """RAS coordinates (mm) of LPS points: (N, 3) or (3,) in, the same shape out (x, y negated)."""
    array = _points(points, "LPS points")
    array[..., :2] *= -1.0
    return array


def ijk_to_ras_matrix(volume: Volume) -> np.ndarray:
    """The 4x4 matrix taking voxel index (i, j, k, 1) = (x, y, z, 1) of ``volume`` to RAS mm,
    as Slicer's ``vtkMRMLVolumeNode.GetIJKToRASMatrix`` gives it for the same grid."""
    return LPS_TO_RAS @ ijk_to_lps_from_geometry(volume)


def volume_from_ijk_to_ras(array_zyx: np.ndarray, ijk_to_ras_4x4) -> Volume:
    """A :class:`Volume` (LPS geometry) from a Slicer array and its IJKToRAS matrix.

    Args:
        array_zyx: voxel values in (k, j, i) = (z, y, x) order, as ``arrayFromVolume`` returns
            them (used as is, not copied: copy it first if the node may change meanwhile).
        ijk_to_ras_4x4: 4x4 matrix (nested lists or array) taking (i, j, k, 1) to RAS mm;
            oblique, flipped and left-handed axes are kept exactly.

    Raises:
        ValueError: the array is not 3D, or the matrix is not an affine 4x4 with non-zero,
            finite columns.
    """
    array = np.asarray(array_zyx)
    if array.ndim != 3:
        raise ValueError(f"A Slicer volume array must be 3D (k, j, i), not of shape {array.shape}")
    matrix = np.asarray(ijk_to_ras_4x4, dtype=float)
    if matrix.shape != (4, 4):
        raise ValueError(f"IJKToRAS must be a 4x4 matrix, not of shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)) or not np.array_equal(matrix[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"IJKToRAS must be a finite affine matrix with last row (0, 0, 0, 1), not {matrix.tolist()}")
    spacing, origin, direction = geometry_from_ijk_to_lps(LPS_TO_RAS @ matrix)
    return Volume(array=array, spacing=spacing, origin=origin, direction=direction)
