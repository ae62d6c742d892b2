"""QC montage: axial, coronal and sagittal slices through the labels' centroid, labels overlaid.

Slices are taken along the index axes (numpy z, y, x): the axial panel is ``array[z]``, the
coronal ``array[:, y]`` and the sagittal ``array[:, :, x]``, the latter two with z increasing
upwards. Each panel is drawn with its physical aspect ratio (pixel sizes from the spacing).
Intensities are windowed to the image's 1st-99th percentiles; each label is blended with its
segment colour (or the default palette) at :data:`OVERLAY_ALPHA`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..volume import LabelVolume, Volume
from ..volume_io import DEFAULT_COLORS, atomic_write

# Pillow sets its module-level filter constants through globals(), which its annotations do not show.
_BILINEAR = Image.BILINEAR  # type: ignore[attr-defined]
_NEAREST = Image.NEAREST  # type: ignore[attr-defined]

#: Opacity of the label colours over the image.
OVERLAY_ALPHA = 0.45
#: Pixels between panels.
GAP = 4


def label_centroid(labels: LabelVolume) -> tuple[int, int, int]:
    """(z, y, x) voxel index of the centroid of all labelled voxels; the centre when empty."""
    points = np.nonzero(labels.array)
    if not points[0].size:
        return tuple(n // 2 for n in labels.array.shape)  # type: ignore[return-value]
    return tuple(int(round(float(p.mean()))) for p in points)  # type: ignore[return-value]


def _window(array: np.ndarray) -> np.ndarray:
    step = max(1, int(round((array.size / 2e6) ** (1 / 3))))
    low, high = np.percentile(array[::step, ::step, ::step], (1, 99))
    scaled = (array.astype(np.float32) - low) / max(float(high - low), 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def _palette(labels: LabelVolume) -> np.ndarray:
    """(max value + 1, 3) uint8 colours indexed by label value; row 0 unused."""
    values = sorted(set(labels.label_values()) | {s.value for s in labels.segments if s.value > 0})
    table = np.zeros((max(values, default=0) + 1, 3), np.uint8)
    for n, value in enumerate(values):
        color = labels.segment(value).color or DEFAULT_COLORS[n % len(DEFAULT_COLORS)]
        table[value] = np.round(np.asarray(color) * 255)
    return table


def _panel(
    grey: np.ndarray, label: np.ndarray, palette: np.ndarray, pixel_mm: tuple[float, float], height: int
) -> Image.Image:
    """One (rows, cols) slice scaled to ``height`` pixels with its physical aspect ratio."""
    rows, cols = grey.shape
    width = max(1, int(round(height * (cols * pixel_mm[1]) / (rows * pixel_mm[0]))))
    grey_image = np.asarray(Image.fromarray(grey).resize((width, height), _BILINEAR), dtype=np.float32)
    label_image = np.asarray(Image.fromarray(label.astype(np.int32)).resize((width, height), _NEAREST))
    rgb = np.repeat(grey_image[..., None], 3, axis=2)
    inside = label_image > 0
    colors = palette[np.clip(label_image, 0, len(palette) - 1)].astype(np.float32)
    rgb[inside] = (1 - OVERLAY_ALPHA) * rgb[inside] + OVERLAY_ALPHA * colors[inside]
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def montage(image: Volume, labels: LabelVolume, *, height: int = 256) -> Image.Image:
    """The RGB montage: axial | coronal | sagittal panels, each ``height`` pixels high.

    Args:
        image: the case's image, (z, y, x) with spacing (x, y, z) in mm.
        labels: its label map on the same grid.
        height: panel height in pixels.
    """
    image.require_same_grid(labels.volume, "label map")
    grey = _window(image.array)
    lab = labels.array
    palette = _palette(labels)
    z, y, x = label_centroid(labels)
    sx, sy, sz = image.spacing
    panels = [
        _panel(grey[z], lab[z], palette, (sy, sx), height),
        _panel(grey[:, y][::-1], lab[:, y][::-1], palette, (sz, sx), height),
        _panel(grey[:, :, x][::-1], lab[:, :, x][::-1], palette, (sz, sy), height),
    ]
    canvas = Image.new("RGB", (sum(p.width for p in panels) + GAP * (len(panels) - 1), height))
    left = 0
    for panel in panels:
        canvas.paste(panel, (left, 0))
        left += panel.width + GAP
    return canvas


def write_montage(image: Volume, labels: LabelVolume, path: str | Path, *, height: int = 256) -> Path:
    """Write :func:`montage` as a PNG, atomically (temporary file + rename); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture = montage(image, labels, height=height)
    atomic_write(out, ".png", lambda temp: picture.save(temp, format="PNG"))
    return out
