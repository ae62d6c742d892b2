"""The working grid of the 3D network: volumes resampled to one voxel spacing (SimpleITK, in
physical LPS mm, geometry kept), and labels resampled back onto an image's own grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from ..volume import LabelVolume, Volume


def check_spacing(spacing_mm: Sequence[float]) -> tuple[float, float, float]:
    """(sx, sy, sz) positive spacing in mm (ITK order); ValueError naming a bad value."""
    try:
        spacing = tuple(float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        raise ValueError(f"A spacing must be 3 positive numbers in mm, not {spacing_mm!r}") from None
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"A spacing must be 3 positive numbers in mm, not {spacing_mm!r}")
    return spacing  # type: ignore[return-value]


def to_spacing(volume: Volume, spacing_mm: Sequence[float], *, labels: bool = False) -> Volume:
    """``volume`` resampled to ``spacing_mm`` (x, y, z) over the same extent (origin at the first
    voxel's corner kept, direction kept): linear (float32) for images, nearest (dtype kept) for
    labels. Unchanged when the spacing already matches."""
    spacing = check_spacing(spacing_mm)
    if np.allclose(volume.spacing, spacing, rtol=1e-6, atol=0):
        return volume if labels else volume.with_array(volume.array.astype(np.float32, copy=False))
    size_xyz = volume.shape[::-1]
    new_size = [max(1, int(round(n * s / t))) for n, s, t in zip(size_xyz, volume.spacing, spacing)]
    direction = volume.direction_matrix
    # keep the corner of voxel 0: origin moves by half the spacing change along each axis
    shift = direction @ ((np.asarray(spacing) - np.asarray(volume.spacing)) / 2.0)
    origin = tuple(float(o) for o in np.asarray(volume.origin) + shift)
    source = volume.to_sitk() if labels else volume.with_array(volume.array.astype(np.float32)).to_sitk()
    out = sitk.Resample(
        source, new_size, sitk.Transform(), sitk.sitkNearestNeighbor if labels else sitk.sitkLinear,
        origin, spacing, volume.direction, 0.0, source.GetPixelID(),
    )
    return Volume.from_sitk(out)


def onto_grid(labels: Volume, reference: Volume) -> Volume:
    """``labels`` (any grid) resampled by nearest neighbour onto ``reference``'s grid (0 outside)."""
    if labels.same_grid(reference):
        return labels
    out = sitk.Resample(
        labels.to_sitk(), reference.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0.0,
        labels.to_sitk().GetPixelID(),
    )
    return Volume.from_sitk(out)


def probabilities_onto_grid(probabilities: np.ndarray, source: Volume, reference: Volume) -> np.ndarray:
    """(C, z, y, x) float probabilities on ``source``'s grid resampled linearly onto
    ``reference``'s grid: (C, z', y', x') float32."""
    out = []
    for channel in probabilities:
        image = source.with_array(np.ascontiguousarray(channel, dtype=np.float32)).to_sitk()
        resampled = sitk.Resample(image, reference.to_sitk(), sitk.Transform(), sitk.sitkLinear, 0.0)
        out.append(sitk.GetArrayFromImage(resampled))
    return np.stack(out).astype(np.float32)


def labels_like(labels: LabelVolume, reference: Volume) -> LabelVolume:
    """``labels`` on ``reference``'s grid (nearest), segment table kept."""
    return LabelVolume(onto_grid(labels.volume, reference), labels.segments)
