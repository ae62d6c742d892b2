"""Overlap and surface-distance metrics between two binary masks, in mm.

Every function takes two masks of the same shape in numpy order (z, y, x) (any dtype; non-zero
is inside) and, for the distances, the voxel size in mm in the same numpy order (z, y, x), e.g.
``Volume.spacing_zyx``. Work is done on the crop to the union bounding box of both masks plus one
voxel, so a small structure in a 512^3 volume costs about as much as in a 64^3 one.

Conventions (those of MedPy and MONAI):

- Surface of a mask: the mask minus its binary erosion by the 6-connected cross (face
  neighbours). Voxels on the border of the array count as surface (outside the array is
  background). A mask one voxel thick is all surface.
- Directed surface distances A -> B: for every surface voxel of A, the Euclidean distance in mm
  to the nearest surface voxel of B (``scipy.ndimage.distance_transform_edt`` with
  ``sampling=spacing``), measured between voxel centres.
- HD95: the larger of the two directed 95th percentiles (numpy's linear interpolation), as
  MedPy's ``hd95`` and MONAI's ``compute_hausdorff_distance(percentile=95)``.
- ASSD: the mean of all surface distances of both directions pooled together,
  ``(sum d(A->B) + sum d(B->A)) / (|dA| + |dB|)`` (Heimann et al. 2009; MONAI's
  ``compute_average_surface_distance(symmetric=True)``). MedPy's ``assd`` averages the two
  directed means instead; both agree when the two surfaces have the same number of voxels.

Edge cases:

- Both masks empty: dice 1, iou 1, hd95 0, assd 0 (the prediction is perfect).
- Exactly one mask empty: dice 0, iou 0, hd95 inf, assd inf. Turning inf into ``None`` for
  JSON is the caller's job.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: The structuring element whose erosion defines the surface: 6-connected (face neighbours).
SURFACE_STRUCTURE = ndimage.generate_binary_structure(3, 1)
#: Voxels added around the union bounding box before computing anything.
CROP_MARGIN = 1


def _masks(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 3 or b.ndim != 3:
        raise ValueError(f"Masks must be 3D (z, y, x), not of shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise ValueError(f"Masks must have the same shape, not {a.shape} and {b.shape}")
    return (a if a.dtype == bool else a != 0), (b if b.dtype == bool else b != 0)


def _spacing(spacing_zyx: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing_zyx)
    if len(values) != 3 or not all(np.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"Spacing must be three positive numbers (z, y, x) in mm, not {tuple(spacing_zyx)}")
    return values  # type: ignore[return-value]


def union_crop(a: np.ndarray, b: np.ndarray, margin: int = CROP_MARGIN) -> tuple[slice, slice, slice] | None:
    """The (z, y, x) slices of the union bounding box of two boolean masks plus ``margin`` voxels.

    Clipped to the array. None when both masks are empty.
    """
    z_any = a.any(axis=(1, 2)) | b.any(axis=(1, 2))
    z = np.flatnonzero(z_any)
    if z.size == 0:
        return None
    z0, z1 = int(z[0]), int(z[-1]) + 1
    # The in-plane extent only needs the occupied z range.
    sub_a, sub_b = a[z0:z1], b[z0:z1]
    y = np.flatnonzero(sub_a.any(axis=(0, 2)) | sub_b.any(axis=(0, 2)))
    x = np.flatnonzero(sub_a.any(axis=(0, 1)) | sub_b.any(axis=(0, 1)))
    bounds = ((z0, z1), (int(y[0]), int(y[-1]) + 1), (int(x[0]), int(x[-1]) + 1))
    return tuple(  # type: ignore[return-value]
        slice(max(lo - margin, 0), min(hi + margin, n)) for (lo, hi), n in zip(bounds, a.shape)
    )


def _cropped(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    crop = union_crop(a, b)
    if crop is None:
        return None
    return a[crop], b[crop]


def surface(mask: np.ndarray) -> np.ndarray:
    """Boolean surface of a boolean (z, y, x) mask: the mask minus its 6-connected erosion.

    Voxels on the array border are surface.
    """
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, structure=SURFACE_STRUCTURE, border_value=0)


def surface_distances(
    a: np.ndarray, b: np.ndarray, spacing_zyx: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: (A -> B, B -> A), two 1D float64 arrays.

    Element i of the first array is the distance from the i-th surface voxel of ``a`` (C order)
    to the nearest surface voxel of ``b``. Both masks must be non-empty.

    Args:
        a, b: (z, y, x) masks of the same shape.
        spacing_zyx: voxel size in mm, numpy order (z, y, x).
    """
    a, b = _masks(a, b)
    spacing = _spacing(spacing_zyx)
    if not a.any() or not b.any():
        raise ValueError("Surface distances need two non-empty masks")
    a, b = _cropped(a, b)  # type: ignore[misc]
    return _directed_distances(a, b, spacing)


def _directed_distances(
    a: np.ndarray, b: np.ndarray, spacing: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    surface_a, surface_b = surface(a), surface(b)
    # Distance of every voxel to the nearest surface voxel of the other mask. The crop holds
    # every voxel of both masks, so the nearest surface voxel is always inside it.
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)
    return to_b[surface_a], to_a[surface_b]


def _overlap(a: np.ndarray, b: np.ndarray, metric) -> float:
    """``metric`` of two (z, y, x) masks on their union's bounding box; 1.0 when both are empty."""
    a, b = _masks(a, b)
    crop = _cropped(a, b)
    return 1.0 if crop is None else metric(*crop)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2|A and B| / (|A| + |B|) of two (z, y, x) masks; 1.0 when both are empty."""
    return _overlap(a, b, _dice)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = np.count_nonzero(a) + np.count_nonzero(b)
    if total == 0:
        return 1.0
    return float(2.0 * np.count_nonzero(a & b) / total)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union |A and B| / |A or B| (Jaccard) of two (z, y, x) masks; 1.0 when both are empty."""
    return _overlap(a, b, _iou)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(a & b) / union)


def _distance_metric(a: np.ndarray, b: np.ndarray, spacing_zyx: Sequence[float], which: str) -> float:
    a, b = _masks(a, b)
    spacing = _spacing(spacing_zyx)
    crop = _cropped(a, b)
    if crop is None:
        return 0.0
    a, b = crop
    if not a.any() or not b.any():
        return float("inf")
    d_ab, d_ba = _directed_distances(a, b, spacing)
    return _hd95(d_ab, d_ba) if which == "hd95" else _assd(d_ab, d_ba)


def _hd95(d_ab: np.ndarray, d_ba: np.ndarray) -> float:
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


def _assd(d_ab: np.ndarray, d_ba: np.ndarray) -> float:
    return float((d_ab.sum() + d_ba.sum()) / (d_ab.size + d_ba.size))


def hausdorff95(a: np.ndarray, b: np.ndarray, spacing_zyx: Sequence[float]) -> float:
    """95th-percentile Hausdorff distance in mm (max of the two directed 95th percentiles).

    Args:
        a, b: (z, y, x) masks of the same shape.
        spacing_zyx: voxel size in mm, numpy order (z, y, x).

    Returns 0.0 when both masks are empty and inf when exactly one is.
    """
    return _distance_metric(a, b, spacing_zyx, "hd95")


def assd(a: np.ndarray, b: np.ndarray, spacing_zyx: Sequence[float]) -> float:
    """Average symmetric surface distance in mm (both directions pooled, see the module doc).

    Args:
        a, b: (z, y, x) masks of the same shape.
        spacing_zyx: voxel size in mm, numpy order (z, y, x).

    Returns 0.0 when both masks are empty and inf when exactly one is.
    """
    return _distance_metric(a, b, spacing_zyx, "assd")


def evaluate(pred: np.ndarray, ref: np.ndarray, spacing_zyx: Sequence[float]) -> dict[str, float]:
    """All four metrics of a prediction against a reference, computed on one shared crop.

    Args:
        pred, ref: (z, y, x) masks of the same shape (non-zero is inside).
        spacing_zyx: voxel size in mm, numpy order (z, y, x).

    Returns:
        {"dice", "iou", "hd95", "assd"} as floats; hd95 and assd in mm, inf when exactly one
        mask is empty (see the module doc for the edge cases).
    """
    pred, ref = _masks(pred, ref)
    spacing = _spacing(spacing_zyx)
    crop = _cropped(pred, ref)
    if crop is None:
        return {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}
    pred, ref = crop
    result = {"dice": _dice(pred, ref), "iou": _iou(pred, ref)}
    if not pred.any() or not ref.any():
        result.update(hd95=float("inf"), assd=float("inf"))
        return result
    d_pr, d_rp = _directed_distances(pred, ref, spacing)
    result.update(hd95=_hd95(d_pr, d_rp), assd=_assd(d_pr, d_rp))
    return result
