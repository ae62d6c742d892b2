"""Label maps drawn over image slices: the pictures of the QC montages.

One slice of a (z, y, x) volume becomes a panel: the image windowed to grey, labels blended in
their segment colours (filled) or traced along their edge (outlined), scaled to a height in
pixels with the slice's physical aspect ratio. Panels are framed, captioned and tiled into one
RGB picture, and written as a PNG through :func:`~SAMFewShotLib.files.write_atomic` (complete or
absent). The batch montage (``batch/montage.py``) and the propagation result montage
(``result_montage.py``) draw with these functions.

Slices are taken along the index axes (axis 0 gives ``array[i]``, axis 1 ``array[:, i]``, axis 2
``array[:, :, i]``) and shown as Slicer's slice view of the nearest orientation shows them
(:func:`plane`): axial with the patient's left on the right and anterior up, coronal and sagittal
with superior up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .files import write_atomic
from .volume import LabelVolume
from .volume_io import DEFAULT_COLORS

# Pillow sets its module-level filter constants through globals(), which its annotations do not show.
_BILINEAR = Image.BILINEAR  # type: ignore[attr-defined]
_NEAREST = Image.NEAREST  # type: ignore[attr-defined]

#: Opacity of a filled label's colour over the image.
OVERLAY_ALPHA = 0.45
#: Pixels between panels.
GAP = 4
#: Height in pixels of a caption line under a panel.
CAPTION_HEIGHT = 12
#: Width in picture pixels of an outlined label's edge.
OUTLINE_PX = 2

RGB = tuple  # (r, g, b) uint8 values


def window(array: np.ndarray) -> np.ndarray:
    """uint8 grey of an image array (any shape): its 1st-99th percentiles (of at most about
    2 million voxels, subsampled evenly) stretched to 0-255."""
    step = max(1, int(round((array.size / 2e6) ** (1 / array.ndim)))) if array.ndim else 1
    sample = array[tuple(slice(None, None, step) for _ in range(array.ndim))]
    low, high = np.percentile(sample, (1, 99))
    scaled = (array.astype(np.float32) - low) / max(float(high - low), 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def palette(labels: LabelVolume) -> np.ndarray:
    """(max value + 1, 3) uint8 colours indexed by label value (segment colour, else the default
    palette in value order); row 0 unused."""
    values = sorted(set(labels.label_values()) | {s.value for s in labels.segments if s.value > 0})
    table = np.zeros((max(values, default=0) + 1, 3), np.uint8)
    for n, value in enumerate(values):
        color = labels.segment(value).color or DEFAULT_COLORS[n % len(DEFAULT_COLORS)]
        table[value] = np.round(np.asarray(color) * 255)
    return table


#: Slicer's slice views as (screen rightward, screen downward) unit vectors in LPS, by the patient
#: axis closest to the slice normal (0 = L, 1 = P, 2 = S): sagittal, coronal, axial
#: (vtkMRMLSliceNode::InitializeSagittal/Coronal/AxialMatrix: radiological, anterior or superior up).
VIEW_AXES = {
    0: ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    1: ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    2: ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
}


def plane(
    array: np.ndarray, axis: int, index: int, spacing_xyz: Sequence[float], direction: Sequence[float]
) -> tuple[np.ndarray, tuple[float, float]]:
    """Slice ``index`` along numpy ``axis`` of a (z, y, x) array as Slicer's slice view of that
    orientation shows it, and its (row, col) pixel size in mm.

    The view is the one whose normal is closest to the slice's (:data:`VIEW_AXES`); the slice's
    in-plane axes are transposed and flipped so that screen right and down follow that view's
    patient directions (on an identity direction: axial (y, x) as is, coronal (z, x) and sagittal
    (z, y) with z upwards).

    Args:
        array: (z, y, x) voxels.
        axis: numpy axis 0, 1 or 2.
        index: slice index along ``axis``.
        spacing_xyz: voxel size (x, y, z) in mm.
        direction: the 3x3 direction matrix, row-major (ITK/SimpleITK order, LPS).
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"Axis must be 0, 1 or 2 (numpy z, y, x), not {axis!r}")
    matrix = np.asarray(direction, np.float64).reshape(3, 3)
    vector = {a: matrix[:, 2 - a] for a in range(3)}  # numpy axis a is ITK index axis 2 - a
    spacing = {a: float(spacing_xyz[2 - a]) for a in range(3)}
    rows, cols = [a for a in range(3) if a != axis]
    right, down = (np.asarray(v) for v in VIEW_AXES[int(np.argmax(np.abs(vector[axis])))])
    out = np.take(array, index, axis=axis)
    if abs(vector[rows] @ down) < abs(vector[rows] @ right):
        out, rows, cols = out.T, cols, rows
    if vector[rows] @ down < 0:
        out = out[::-1]
    if vector[cols] @ right < 0:
        out = out[:, ::-1]
    return out, (spacing[rows], spacing[cols])


def edges(label: np.ndarray, width: int = 1) -> np.ndarray:
    """bool mask of the labelled pixels (value > 0) of a 2D label image within ``width`` pixels
    (4-neighbour steps) of a pixel of another value or of the border."""
    padded = np.pad(label, 1, mode="constant")
    centre = padded[1:-1, 1:-1]
    differs = np.zeros(label.shape, bool)
    for rows, cols in ((slice(None, -2), slice(1, -1)), (slice(2, None), slice(1, -1)),
                       (slice(1, -1), slice(None, -2)), (slice(1, -1), slice(2, None))):
        differs |= padded[rows, cols] != centre
    inside = label > 0
    near = differs & inside
    if width > 1 and near.any():
        near = ndimage.binary_dilation(near, iterations=width - 1) & inside
    return near


def panel(
    grey: np.ndarray,
    colors: np.ndarray,
    pixel_mm: tuple[float, float],
    height: int,
    *,
    filled: np.ndarray | None = None,
    outlined: np.ndarray | None = None,
) -> Image.Image:
    """One slice as an RGB picture ``height`` pixels high with its physical aspect ratio.

    Args:
        grey: (rows, cols) uint8 image (see :func:`window`).
        colors: :func:`palette` table.
        pixel_mm: (row, col) pixel size in mm.
        height: picture height in pixels.
        filled: (rows, cols) label values blended in their colour at :data:`OVERLAY_ALPHA`.
        outlined: (rows, cols) label values whose edge (:data:`OUTLINE_PX` picture pixels wide) is
            drawn opaque.
    """
    rows, cols = grey.shape
    width = max(1, int(round(height * (cols * pixel_mm[1]) / (rows * pixel_mm[0]))))
    grey_image = np.asarray(Image.fromarray(grey).resize((width, height), _BILINEAR), dtype=np.float32)
    rgb = np.repeat(grey_image[..., None], 3, axis=2)
    for labels, outline in ((filled, False), (outlined, True)):
        if labels is None:
            continue
        scaled = np.asarray(Image.fromarray(labels.astype(np.int32)).resize((width, height), _NEAREST))
        scaled = np.clip(scaled, 0, len(colors) - 1)
        where = edges(scaled, OUTLINE_PX) if outline else scaled > 0
        color = colors[scaled].astype(np.float32)
        alpha = 1.0 if outline else OVERLAY_ALPHA
        rgb[where] = (1 - alpha) * rgb[where] + alpha * color[where]
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def framed(picture: Image.Image, color: RGB, width: int = 3, caption: str = "") -> Image.Image:
    """``picture`` inside a frame of ``width`` pixels of ``color``, with an optional one-line
    caption (white on black, :data:`CAPTION_HEIGHT` pixels) under it."""
    below = CAPTION_HEIGHT if caption else 0
    out = Image.new("RGB", (picture.width + 2 * width, picture.height + 2 * width + below), tuple(color))
    out.paste(picture, (width, width))
    if caption:
        draw = ImageDraw.Draw(out)
        top = picture.height + 2 * width
        draw.rectangle((0, top, out.width, out.height), fill=(0, 0, 0))
        draw.text((2, top), caption, fill=(255, 255, 255))
    return out


def tile(pictures: Sequence[Image.Image], columns: int, gap: int = GAP) -> tuple[Image.Image, list[tuple]]:
    """Pictures in rows of ``columns``, left to right then top to bottom, ``gap`` pixels apart on
    black; each row as high as its tallest picture.

    Returns:
        The picture and, per input, its (left, top, right, bottom) box in it.
    """
    if columns < 1:
        raise ValueError(f"columns must be >= 1, not {columns!r}")
    rows = [list(pictures[i:i + columns]) for i in range(0, len(pictures), columns)]
    widths = [sum(p.width for p in row) + gap * (len(row) - 1) for row in rows]
    heights = [max(p.height for p in row) for row in rows]
    canvas = Image.new("RGB", (max(widths, default=1), max(1, sum(heights) + gap * (len(rows) - 1))))
    boxes = []
    top = 0
    for row, height in zip(rows, heights):
        left = 0
        for picture in row:
            canvas.paste(picture, (left, top))
            boxes.append((left, top, left + picture.width, top + picture.height))
            left += picture.width + gap
        top += height + gap
    return canvas, boxes


def stack(pictures: Sequence[Image.Image], gap: int = GAP) -> Image.Image:
    """Pictures one under the other, left-aligned on black, ``gap`` pixels apart."""
    return tile(pictures, columns=1, gap=gap)[0]


def write_png(picture: Image.Image, path: str | Path) -> Path:
    """Write ``picture`` as a PNG at ``path`` (its folder is created), atomically: the file is
    complete or absent. Returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(out, lambda temp: picture.save(temp, format="PNG"), suffix=".png")
