"""A small synthetic "abdomen" for the atlas tests: a textured body with three labelled organs of
different intensities, on an explicit grid; and the fast registration settings the tests use."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from SAMFewShotLib.volume import LabelVolume, Segment, Volume

#: Registration settings for 40^3 test volumes: a few seconds per registration on 2 cores.
FAST = {
    "affine_resolutions": 2,
    "affine_iterations": 100,
    "bspline_resolutions": 2,
    "bspline_iterations": 150,
    "grid_spacing_mm": 12.0,
    "spatial_samples": 2048,
}
LIVER_TERMINOLOGY = (
    "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
    "~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^"
)
SEGMENTS = (
    Segment(1, "liver", (0.87, 0.51, 0.40), LIVER_TERMINOLOGY),
    Segment(2, "spleen", (0.62, 0.0, 1.0), None),
    Segment(3, "kidney", (0.73, 0.31, 0.27), None),
)


def _ellipsoid(center, radii, shape) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii)) <= 1


def phantom(shape=(40, 40, 40), spacing=(2.0, 2.0, 2.0), origin=(-40.0, -40.0, -40.0), seed: int = 0,
            direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)) -> tuple[Volume, LabelVolume]:
    """(image, labels) of ``shape`` (z, y, x) on the given grid: body ~40, liver (1) ~120,
    spleen (2) ~80, kidney (3) ~170, smooth texture and noise; labels uint8 with names."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    body = _ellipsoid((nz / 2, ny / 2, nx / 2), (nz * 0.45, ny * 0.42, nx * 0.45), shape)
    liver = _ellipsoid((nz * 0.5, ny * 0.45, nx * 0.33), (nz * 0.25, ny * 0.2, nx * 0.17), shape)
    spleen = _ellipsoid((nz * 0.55, ny * 0.45, nx * 0.72), (nz * 0.15, ny * 0.12, nx * 0.1), shape) & ~liver
    kidney = _ellipsoid((nz * 0.4, ny * 0.7, nx * 0.55), (nz * 0.12, ny * 0.08, nx * 0.08), shape) & ~liver & ~spleen
    labels = np.zeros(shape, np.uint8)
    for value, mask in ((1, liver), (2, spleen), (3, kidney)):
        labels[mask & body] = value
    image = np.full(shape, -100.0)
    image[body] = 40.0
    for value, level in ((1, 120.0), (2, 80.0), (3, 170.0)):
        image[labels == value] = level
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    image += 8.0 * texture / texture.std()
    image += rng.normal(0.0, 3.0, shape)
    volume = Volume(image.astype(np.float32), spacing, origin, direction)
    return volume, LabelVolume(volume.with_array(labels), SEGMENTS)


def mean_dice(a: np.ndarray, b: np.ndarray, values=(1, 2, 3)) -> float:
    """Mean Dice over ``values`` of two label arrays."""
    from SAMFewShotLib.metrics import dice

    return float(np.mean([dice(a == v, b == v) for v in values]))
