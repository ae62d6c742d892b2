"""The network's input grid: a volume resampled to size^3 voxels over its own physical extent.

RRL-MedSAM works on volumes resampled to 128^3 (the paper's setting). :func:`cube_grid` keeps the
volume's direction and physical box (edge to edge) and changes only the voxel count, so the
cube's spacing is extent / size per axis (anisotropic when the extent is). Images are smoothed
(Gaussian, sigma = half the new spacing where it grows) then resampled linearly; label maps
go both ways with nearest neighbour (:func:`labels_to_cube`, :func:`labels_from_cube`).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from ...volume import LabelVolume, Volume, label_dtype
from ..normalisation import normalise


def cube_grid(volume: Volume, size: int) -> Volume:
    """An empty (zeros, float32) ``size``^3 volume covering ``volume``'s physical box, same direction."""
    if size < 2:
        raise ValueError(f"size must be >= 2, not {size}")
    shape_xyz = np.array(volume.shape[::-1], dtype=float)
    old = np.array(volume.spacing)
    new = old * shape_xyz / size
    origin = np.array(volume.origin) + volume.direction_matrix @ ((new - old) / 2.0)
    return Volume(np.zeros((size,) * 3, np.float32), tuple(new), tuple(origin), volume.direction)


def _resample(image: sitk.Image, reference: Volume, interpolator: int) -> np.ndarray:
    return sitk.GetArrayFromImage(
        sitk.Resample(image, reference.to_sitk(), sitk.Transform(), interpolator, 0.0, image.GetPixelID())
    )


def image_to_cube(volume: Volume, size: int) -> Volume:
    """``volume`` resampled to its ``size``^3 cube grid (float32, anti-aliased linear)."""
    cube = cube_grid(volume, size)
    image = sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)
    sigma = [0.5 * max(new - old, 0.0) for new, old in zip(cube.spacing, volume.spacing)]
    if max(sigma) > 0:
        image = sitk.SmoothingRecursiveGaussian(image, [max(s, 1e-6) for s in sigma])
    return cube.with_array(_resample(image, cube, sitk.sitkLinear).astype(np.float32))


def labels_to_cube(labels: LabelVolume, size: int) -> LabelVolume:
    """``labels`` resampled (nearest neighbour) to its ``size``^3 cube grid; segments kept."""
    cube = cube_grid(labels.volume, size)
    array = _resample(labels.volume.to_sitk(), cube, sitk.sitkNearestNeighbor)
    return LabelVolume(cube.with_array(array.astype(labels.array.dtype)), labels.segments)


def labels_from_cube(labels: LabelVolume, reference: Volume) -> LabelVolume:
    """Cube ``labels`` resampled (nearest neighbour) onto ``reference``'s grid and geometry."""
    dtype = label_dtype(int(labels.array.max()) if labels.array.size else 0)
    image = sitk.Cast(labels.volume.to_sitk(), sitk.sitkUInt32)
    array = _resample(image, reference, sitk.sitkNearestNeighbor).astype(dtype)
    return LabelVolume(reference.with_array(array), labels.segments)


def cube_tensor(volume: Volume, size: int, normalisation: dict) -> tuple[torch.Tensor, Volume]:
    """The network input of ``volume``: (1, 1, size, size, size) float32 normalised intensities
    (see :mod:`..normalisation`) and the cube grid they lie on."""
    cube = image_to_cube(volume, size)
    values = normalise(cube.array, normalisation)
    return torch.from_numpy(np.ascontiguousarray(values))[None, None], cube


def one_hot(labels: np.ndarray, values: list[int]) -> torch.Tensor:
    """(1, 1 + len(values), D, H, W) float32 one-hot of a (D, H, W) label array; class 0 is
    background (any value not listed), class i the label ``values[i - 1]``."""
    classes = np.zeros(labels.shape, np.int64)
    for index, value in enumerate(values, start=1):
        classes[labels == value] = index
    encoded = torch.nn.functional.one_hot(torch.from_numpy(classes), len(values) + 1)
    return encoded.permute(3, 0, 1, 2)[None].float().contiguous()
