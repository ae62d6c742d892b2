"""A picture of a propagation result, to see where to correct before opening Slicer.

Slices along the annotated axis, in order, as tiles of one PNG:

- every drawn slice (at most :data:`MAX_DRAWN_TILES`, evenly chosen), labels filled, in a white
  frame captioned "drawn";
- :data:`PROPAGATED_TILES` slices evenly spaced over the predicted extent, the propagated labels
  outlined in their colours, in a grey frame captioned with the slice's confidence, or an orange
  frame captioned "LOW" when its confidence is under the threshold (the same rule and colour as
  the Slicer preview's low-confidence part: ``slicer_support/preview_parts.py``);
- under the tiles, a strip with one column per slice from the first to the last slice drawn or
  predicted: the confidence as a bar (grey), drawn slices white, low-confidence predicted slices
  orange, so low slices between the tiles show too;
- above them, one line: the engine, the expected Dice per label where the engine estimates it.

A slice's confidence is the lowest ``Prediction.slice_confidence`` among the labels predicted on
it. Drawing is :mod:`SAMFewShotLib.overlay`'s; the file is written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .annotation import SparseAnnotation
from .overlay import CAPTION_HEIGHT, GAP, framed, palette, panel, plane, stack, tile, window, write_png
from .prediction import Prediction
from .volume import Volume

#: Confidence under which a predicted slice is flagged (slicer_support.preview_parts uses the same).
LOW_CONFIDENCE_THRESHOLD = 0.5
#: Propagated slices shown, evenly spaced over the predicted extent.
PROPAGATED_TILES = 8
#: Drawn slices shown at most (evenly chosen when more were drawn).
MAX_DRAWN_TILES = 10
#: Frame colours (RGB): drawn slices, propagated slices, low-confidence propagated slices.
DRAWN_FRAME = (255, 255, 255)
PROPAGATED_FRAME = (70, 70, 70)
LOW_FRAME = (255, 140, 0)  # Slicer preview's LOW_CONFIDENCE_COLOR (1.0, 0.55, 0.0)
FRAME_PX = 3
#: Height in pixels of the confidence strip.
STRIP_HEIGHT = 24


@dataclass(frozen=True)
class MontageTile:
    """One tile of the montage.

    Attributes:
        slice: index along the annotated axis.
        kind: "drawn" or "propagated".
        confidence: the slice's confidence (None on a slice without prediction or confidence).
        low: a propagated slice under the threshold.
        box: (left, top, right, bottom) pixels of the framed tile in the picture.
    """

    slice: int
    kind: str
    confidence: float | None
    low: bool
    box: tuple[int, int, int, int]


@dataclass
class ResultMontage:
    """The picture and what each tile shows; ``low_slices``: every flagged slice (ascending)."""

    picture: Image.Image
    tiles: list[MontageTile] = field(default_factory=list)
    low_slices: list[int] = field(default_factory=list)


def evenly_chosen(candidates: list[int], count: int) -> list[int]:
    """At most ``count`` of the sorted ``candidates``, evenly spread, first and last included."""
    if count <= 0 or not candidates:
        return []
    if len(candidates) <= count:
        return list(candidates)
    picks = np.unique(np.round(np.linspace(0, len(candidates) - 1, count)).astype(int))
    return [candidates[i] for i in picks]


def slice_confidences(prediction: Prediction, predicted: np.ndarray) -> list[float | None]:
    """Per slice along the axis: the lowest confidence of the labels predicted on it, None where
    no label is predicted or no label reports a confidence.

    Args:
        predicted: (n_slices, n_labels) bool: label j has a voxel on slice i, labels in the order
            of ``prediction.slice_confidence``.
    """
    out: list[float | None] = []
    confidences = list(prediction.slice_confidence.values())
    for s in range(predicted.shape[0]):
        values = [float(c[s]) for j, c in enumerate(confidences) if predicted[s, j] and s < len(c)]
        out.append(min(values) if values else None)
    return out


def result_montage(
    image: Volume,
    annotation: SparseAnnotation,
    prediction: Prediction,
    *,
    engine: str = "",
    tile_height: int = 160,
    columns: int = 6,
    propagated_tiles: int = PROPAGATED_TILES,
    threshold: float = LOW_CONFIDENCE_THRESHOLD,
) -> ResultMontage:
    """Draw the montage described in the module docstring.

    Args:
        image: the propagated image, (z, y, x), spacing (x, y, z) in mm.
        annotation: the drawn slices (on the image grid).
        prediction: the engine's result on the image grid (its ``axis`` is the annotation's).
        engine: the engine name for the header line.
        tile_height: height of each slice panel in pixels.
        columns: tiles per row.
        propagated_tiles: evenly spaced propagated slices shown.
        threshold: confidence in [0, 1] under which a propagated slice is flagged.

    Raises:
        ValueError: grids differ, a threshold outside [0, 1], or columns < 1.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"Confidence threshold must be in [0, 1], not {threshold!r}")
    image.require_same_grid(annotation.labels.volume, "annotation")
    image.require_same_grid(prediction.labels.volume, "prediction")
    axis = annotation.axis
    labels = prediction.labels
    values = list(prediction.slice_confidence)
    canonical = annotation.to_canonical(labels.array)
    predicted = np.stack([(canonical == v).any(axis=(1, 2)) for v in values], axis=1) if values else np.zeros(
        (annotation.n_slices, 0), bool)
    confidence = slice_confidences(prediction, predicted)
    drawn = sorted({s for v in annotation.label_values for s in annotation.drawn_slices(v)})
    drawn_set = set(drawn)
    occupied = [int(s) for s in np.flatnonzero(canonical.reshape(canonical.shape[0], -1).any(axis=1))]
    flaggable = set(occupied) - drawn_set
    low = [s for s, value in enumerate(confidence) if s in flaggable and value is not None and value < threshold]
    shown_drawn = evenly_chosen(drawn, MAX_DRAWN_TILES)
    extent = list(range(occupied[0], occupied[-1] + 1)) if occupied else []
    shown_propagated = evenly_chosen([s for s in extent if s not in drawn_set], propagated_tiles)

    grey = window(image.array)
    colors = palette(labels)

    def view(array: np.ndarray, s: int) -> np.ndarray:
        return plane(array, axis, s, image.spacing, image.direction)[0]

    pixel_mm = plane(grey, axis, 0, image.spacing, image.direction)[1]
    low_set = set(low)
    pictures, described = [], []
    for s in sorted(shown_drawn + shown_propagated):
        kind = "drawn" if s in drawn_set else "propagated"
        here = view(labels.array, s)
        if kind == "drawn":
            picture = panel(view(grey, s), colors, pixel_mm, tile_height, filled=here)
            frame, caption = DRAWN_FRAME, f"{s} drawn"
        else:
            picture = panel(view(grey, s), colors, pixel_mm, tile_height, outlined=here)
            value = confidence[s]
            frame = LOW_FRAME if s in low_set else PROPAGATED_FRAME
            caption = f"{s} " + ("-" if value is None else f"c {value:.2f}") + (" LOW" if s in low_set else "")
        pictures.append(framed(picture, frame, FRAME_PX, caption))
        described.append((s, kind, confidence[s], s in low_set))
    tiles_picture, boxes = tile(pictures, columns) if pictures else (Image.new("RGB", (tile_height, tile_height)), [])
    width = tiles_picture.width
    header = _header(prediction, engine, len(drawn), len(low), threshold, width)
    shown = range(min(occupied + drawn), max(occupied + drawn) + 1)
    strip = framed(_confidence_strip(confidence, shown, drawn_set, low_set, width - 2), (0, 0, 0), 1,
                   f"confidence per slice, slices {shown[0]}-{shown[-1]} along axis {axis}")
    picture = stack([header, tiles_picture, strip])
    top = header.height + GAP
    tiles = [
        MontageTile(s, kind, value, flagged, (box[0], box[1] + top, box[2], box[3] + top))
        for (s, kind, value, flagged), box in zip(described, boxes)
    ]
    return ResultMontage(picture=picture, tiles=tiles, low_slices=low)


def _header(prediction: Prediction, engine: str, drawn: int, low: int, threshold: float, width: int) -> Image.Image:
    """Two caption lines: what the tiles show, and the expected Dice per label."""
    names = {s.value: s.display_name() for s in prediction.labels.segments}
    expected = ", ".join(
        f"{names.get(v, f'label {v}')} {d:.2f}" for v, d in sorted(prediction.expected_dice.items())
    )
    lines = [
        f"{engine + ': ' if engine else ''}{drawn} drawn slice(s) filled (white), propagated outlined, "
        f"{low} slice(s) with confidence < {threshold:g} (orange)",
        f"expected Dice: {expected}" if expected else "expected Dice: not estimated",
    ]
    out = Image.new("RGB", (max(width, 1), CAPTION_HEIGHT * len(lines) + 2), (0, 0, 0))
    draw = ImageDraw.Draw(out)
    for n, line in enumerate(lines):
        draw.text((2, 1 + n * CAPTION_HEIGHT), line, fill=(255, 255, 255))
    return out


def _confidence_strip(confidence: list, shown: range, drawn: set, low: set, width: int) -> Image.Image:
    """One column per slice of ``shown`` (left = its first): a bar as high as the confidence
    (grey), drawn slices white, low-confidence slices orange; slices without prediction black."""
    array = np.zeros((STRIP_HEIGHT, max(width, 1), 3), np.uint8)
    edges = np.linspace(0, array.shape[1], len(shown) + 1).round().astype(int)
    for n, s in enumerate(shown):
        value = confidence[s]
        left, right = edges[n], max(edges[n + 1], edges[n] + 1)
        if s in drawn:
            array[:, left:right] = DRAWN_FRAME
        elif value is not None:
            bar = max(1, int(round(value * STRIP_HEIGHT)))
            array[STRIP_HEIGHT - bar:, left:right] = LOW_FRAME if s in low else (150, 150, 150)
    return Image.fromarray(array)


def write_result_montage(
    path: str | Path, image: Volume, annotation: SparseAnnotation, prediction: Prediction, *, engine: str = ""
) -> Path:
    """Draw :func:`result_montage` and write it as a PNG at ``path`` (complete or absent)."""
    return write_png(result_montage(image, annotation, prediction, engine=engine).picture, path)
