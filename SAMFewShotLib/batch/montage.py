"""QC montage: axial, coronal and sagittal slices through the labels' centroid, labels overlaid.

Slices are taken along the index axes (numpy z, y, x): the first panel is ``array[z]``, the
second ``array[:, y]`` and the third ``array[:, :, x]``, each shown as Slicer's nearest view shows
it (``overlay.plane``: on an identity direction axial, coronal and sagittal with z upwards).
Each panel is drawn with its physical aspect ratio (pixel sizes from the spacing).
Intensities are windowed to the image's 1st-99th percentiles; each label is blended with its
segment colour (or the default palette) at :data:`~SAMFewShotLib.overlay.OVERLAY_ALPHA`. The
drawing itself is :mod:`SAMFewShotLib.overlay`'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..overlay import GAP, palette, panel, plane, tile, window, write_png
from ..volume import LabelVolume, Volume

__all__ = ["GAP", "label_centroid", "montage", "write_montage"]


def label_centroid(labels: LabelVolume) -> tuple[int, int, int]:
    """(z, y, x) voxel index of the centroid of all labelled voxels; the centre when empty."""
    points = np.nonzero(labels.array)
    if not points[0].size:
        return tuple(n // 2 for n in labels.array.shape)  # type: ignore[return-value]
    return tuple(int(round(float(p.mean()))) for p in points)  # type: ignore[return-value]


def montage(image: Volume, labels: LabelVolume, *, height: int = 256) -> Image.Image:
    """The RGB montage: axial | coronal | sagittal panels, each ``height`` pixels high.

    Args:
        image: the case's image, (z, y, x) with spacing (x, y, z) in mm.
        labels: its label map on the same grid.
        height: panel height in pixels.
    """
    image.require_same_grid(labels.volume, "label map")
    grey = window(image.array)
    colors = palette(labels)
    centre = label_centroid(labels)
    panels = []
    for axis in (0, 1, 2):
        view, pixel_mm = plane(grey, axis, centre[axis], image.spacing, image.direction)
        label_view, _ = plane(labels.array, axis, centre[axis], image.spacing, image.direction)
        panels.append(panel(view, colors, pixel_mm, height, filled=label_view))
    return tile(panels, columns=len(panels), gap=GAP)[0]


def write_montage(image: Volume, labels: LabelVolume, path: str | Path, *, height: int = 256) -> Path:
    """Write :func:`montage` as a PNG, atomically (temporary file + rename); returns the path."""
    return write_png(montage(image, labels, height=height), path)
