"""Known smooth random deformations, to measure atlas registration where the truth is known.

A field is drawn as independent Gaussian displacements on a coarse control grid (one control
point every ``control_spacing_mm``), interpolated to the image grid with cubic splines, and
scaled so that its largest displacement is exactly ``max_displacement_mm``. Warping an image
and its label map with the same field gives a target whose true labels are known: registering
the undeformed atlas onto the deformed image should give the deformed labels back.

Fields are (nz, ny, nx, 3) float64 arrays on the image grid (numpy order z, y, x); the last
axis holds the physical displacement in mm in ITK order (x, y, z), LPS, so that
``warped(p) = original(p + d(p))`` for every physical point ``p`` of the grid (SimpleITK's
:class:`DisplacementFieldTransform` convention: the field maps output points to input points).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..volume import LabelVolume, Volume


def smooth_random_field(
    grid: Volume, max_displacement_mm: float, *, control_spacing_mm: float = 40.0, seed: int = 0
) -> np.ndarray:
    """A smooth random displacement field on ``grid``'s grid.

    Args:
        grid: the volume whose grid (shape, spacing) the field lives on.
        max_displacement_mm: the largest displacement length, in mm (> 0).
        control_spacing_mm: distance between the random control points, in mm: the larger, the
            smoother (and the more organ-scale) the deformation.
        seed: random seed.

    Returns:
        (nz, ny, nx, 3) float64: displacement in mm, components (x, y, z) in physical LPS.
    """
    if not max_displacement_mm > 0:
        raise ValueError(f"max_displacement_mm must be positive, not {max_displacement_mm!r}")
    if not control_spacing_mm > 0:
        raise ValueError(f"control_spacing_mm must be positive, not {control_spacing_mm!r}")
    rng = np.random.default_rng(seed)
    shape = np.asarray(grid.shape)
    extent_mm = shape * np.asarray(grid.spacing_zyx)
    coarse_shape = np.maximum(np.ceil(extent_mm / control_spacing_mm).astype(int) + 1, 2)
    field = np.empty(tuple(shape) + (3,), np.float64)
    for component in range(3):
        coarse = rng.standard_normal(tuple(coarse_shape))
        field[..., component] = ndimage.zoom(coarse, shape / coarse_shape, order=3, mode="nearest", grid_mode=True)
    length = np.sqrt((field**2).sum(axis=-1)).max()
    return field * (max_displacement_mm / length)


def _transform(grid: Volume, field: np.ndarray) -> sitk.DisplacementFieldTransform:
    if field.shape != tuple(grid.shape) + (3,):
        raise ValueError(f"The field must have shape {tuple(grid.shape) + (3,)} (z, y, x, 3), not {field.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(field, dtype=np.float64), isVector=True)
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    return sitk.DisplacementFieldTransform(image)


def warp_volume(volume: Volume, field: np.ndarray, *, default: float | None = None) -> Volume:
    """``volume`` warped by ``field`` (linear interpolation), same grid and dtype.

    Args:
        volume: image, (z, y, x).
        field: from :func:`smooth_random_field` on this grid.
        default: value where the field points outside the image (default: the image's minimum,
            air in CT).
    """
    default = float(volume.array.min()) if default is None else float(default)
    source = volume.to_sitk()
    warped = sitk.Resample(source, source, _transform(volume, field), sitk.sitkLinear, default, sitk.sitkFloat64)
    array = sitk.GetArrayFromImage(warped)
    if np.issubdtype(volume.array.dtype, np.integer):
        info = np.iinfo(volume.array.dtype)
        array = np.clip(np.round(array), info.min, info.max)
    return volume.with_array(array.astype(volume.array.dtype))


def warp_labels(labels: LabelVolume, field: np.ndarray) -> LabelVolume:
    """``labels`` warped by ``field`` (nearest neighbour, 0 outside), same grid, dtype and segments."""
    source = labels.volume.to_sitk()
    warped = sitk.Resample(source, source, _transform(labels.volume, field), sitk.sitkNearestNeighbor, 0)
    return labels.with_array(sitk.GetArrayFromImage(warped).astype(labels.array.dtype))


def deform_case(
    image: Volume,
    labels: LabelVolume,
    max_displacement_mm: float,
    *,
    control_spacing_mm: float = 40.0,
    seed: int = 0,
) -> tuple[Volume, LabelVolume]:
    """An image and its label map warped by one :func:`smooth_random_field` (the labels are the
    deformed image's true labels)."""
    image.require_same_grid(labels.volume, "labels")
    field = smooth_random_field(image, max_displacement_mm, control_spacing_mm=control_spacing_mm, seed=seed)
    return warp_volume(image, field), warp_labels(labels, field)
