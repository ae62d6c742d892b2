"""Slice preprocessing for SAM, identical to ``SamPredictor.set_image``.

A volume slice becomes SAM's input in four steps:

1. Take slice ``index`` along numpy ``axis`` of the (z, y, x) array. The slice is a 2D array
   (rows, cols) in the canonical order of :class:`SparseAnnotation` (``np.moveaxis(array,
   axis, 0)[index]``): axial (axis 0) slices are (y, x), coronal (axis 1) (z, x), sagittal
   (axis 2) (z, y).
2. Where the in-plane pixels are not square, resample the slice (linear) to square pixels of
   the finer of the two spacings; SAM then sees the "model grid". :class:`SliceGeometry` maps
   prompts from the slice grid to the model grid and logits/masks back.
3. Window the intensities (a CT preset (level, width) in HU, or the volume's 0.5-99.5
   percentiles, which MR uses) to uint8 and replicate to RGB, HWC.
4. Exactly ``SamPredictor.set_image``: ``ResizeLongestSide(img_size).apply_image`` (PIL
   bilinear with antialiasing), ``torch.as_tensor(...).permute(2, 0, 1)``, then
   ``sam.preprocess`` (normalise with the model's pixel mean/std and pad to img_size squared).

Coordinates follow SAM: a point is (X, Y) = (col, row) in pixels, a box is XYXY.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from torch.nn import functional as F

from ..errors import InputError
from ..volume import Volume
from .efficientvit import encoder_input_side

#: CT display windows as (level, width) in HU.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft-tissue": (40.0, 400.0),
    "abdomen": (60.0, 400.0),
    "liver": (60.0, 160.0),
    "mediastinum": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
#: Percentiles of the volume mapped to 0 and 255 by the "percentile" window (MR, unknown units).
DEFAULT_PERCENTILES = (0.5, 99.5)
#: Relative difference below which two in-plane spacings count as square pixels.
SQUARE_TOLERANCE = 1e-3
#: Version of the preprocessing pipeline; part of every cache key, bump on any change here.
PIPELINE_VERSION = 1


@dataclass(frozen=True)
class Preprocessing:
    """How slices are turned into SAM images; its :meth:`key` is part of embedding cache keys.

    Attributes:
        window: the window's name: a :data:`CT_WINDOWS` preset, ``"percentile-0.5-99.5"`` or
            ``"custom"``.
        low: intensity (volume units, HU for CT) mapped to 0.
        high: intensity mapped to 255 (> low).
        square_pixels: resample slices with non-square in-plane pixels to square ones.
    """

    window: str
    low: float
    high: float
    square_pixels: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.high > self.low):
            raise InputError(f"Window must have finite low < high, not ({self.low}, {self.high})")

    @classmethod
    def from_window(
        cls, level: float, width: float, name: str = "custom", square_pixels: bool = True
    ) -> Preprocessing:
        """A window centred on ``level`` spanning ``width`` (HU for CT)."""
        if width <= 0:
            raise InputError(f"Window width must be positive, not {width}")
        return cls(name, level - width / 2.0, level + width / 2.0, square_pixels)

    @classmethod
    def ct(cls, name: str, square_pixels: bool = True) -> Preprocessing:
        """A CT preset by name (see :data:`CT_WINDOWS`)."""
        if name not in CT_WINDOWS:
            raise InputError(f"CT window must be one of {', '.join(CT_WINDOWS)}, not {name!r}")
        level, width = CT_WINDOWS[name]
        return cls.from_window(level, width, name, square_pixels)

    @classmethod
    def from_percentiles(
        cls,
        volume: Volume,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
        square_pixels: bool = True,
    ) -> Preprocessing:
        """The window from the ``percentiles`` (in [0, 100]) of the whole volume (MR)."""
        lower, upper = percentiles
        if not 0 <= lower < upper <= 100:
            raise InputError(f"Percentiles must satisfy 0 <= low < high <= 100, not {percentiles}")
        low, high = (float(v) for v in np.percentile(volume.array, [lower, upper]))
        if not high > low:  # a constant volume (or nearly): any window maps it to one grey level
            high = low + 1.0
        return cls(f"percentile-{lower:g}-{upper:g}", low, high, square_pixels)

    @classmethod
    def for_volume(cls, volume: Volume, window: str = "auto", square_pixels: bool = True) -> Preprocessing:
        """The preprocessing named by ``window``: a CT preset, ``"percentile"``, or ``"auto"``
        (the soft-tissue preset when the volume looks like CT in HU, see :func:`looks_like_ct`,
        else percentiles)."""
        if window == "auto":
            window = "soft-tissue" if looks_like_ct(volume) else "percentile"
        if window == "percentile":
            return cls.from_percentiles(volume, square_pixels=square_pixels)
        if window in CT_WINDOWS:
            return cls.ct(window, square_pixels)
        raise InputError(f"Window must be auto, percentile or one of {', '.join(CT_WINDOWS)}, not {window!r}")

    def key(self) -> str:
        """A stable text naming this preprocessing exactly (for cache keys)."""
        return (
            f"v{PIPELINE_VERSION};window={self.window};low={self.low!r};high={self.high!r};"
            f"square={int(self.square_pixels)}"
        )

    def to_uint8(self, values: np.ndarray) -> np.ndarray:
        """Window intensities to uint8: ``low`` -> 0, ``high`` -> 255, clipped, rounded."""
        scaled = (np.asarray(values, dtype=np.float64) - self.low) / (self.high - self.low)
        return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def looks_like_ct(volume: Volume) -> bool:
    """True when the volume holds CT numbers in HU: at least 1% of voxels at or below -500
    (air is -1000 HU; MR intensities are not negative)."""
    return float(np.percentile(volume.array, 1.0)) <= -500.0


# Geometry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SliceGeometry:
    """Maps between a volume slice's grid and the square-pixel "model grid" SAM sees.

    Both grids cover the same extent (pixel edges to pixel edges): slice pixel centre ``i``
    is at model-grid coordinate ``(i + 0.5) * model / slice - 0.5`` along each axis. With
    square pixels both grids are the same and every mapping returns its input unchanged.

    Attributes:
        slice_shape: (rows, cols) of the volume slice.
        model_shape: (rows, cols) of the image given to SAM (SamPredictor's ``original_size``).
    """

    slice_shape: tuple[int, int]
    model_shape: tuple[int, int]

    @property
    def is_identity(self) -> bool:
        return tuple(self.slice_shape) == tuple(self.model_shape)

    def _scales(self) -> tuple[float, float]:
        """(row, col) model pixels per slice pixel."""
        return self.model_shape[0] / self.slice_shape[0], self.model_shape[1] / self.slice_shape[1]

    def points_to_model(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) (X, Y) = (col, row) slice pixel coordinates -> model-grid pixel coordinates."""
        points = np.asarray(points, dtype=np.float64)
        if self.is_identity:
            return points
        row_scale, col_scale = self._scales()
        out = points.copy()
        out[..., 0] = (points[..., 0] + 0.5) * col_scale - 0.5
        out[..., 1] = (points[..., 1] + 0.5) * row_scale - 0.5
        return out

    def points_to_slice(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`points_to_model`."""
        points = np.asarray(points, dtype=np.float64)
        if self.is_identity:
            return points
        row_scale, col_scale = self._scales()
        out = points.copy()
        out[..., 0] = (points[..., 0] + 0.5) / col_scale - 0.5
        out[..., 1] = (points[..., 1] + 0.5) / row_scale - 0.5
        return out

    def boxes_to_model(self, boxes: np.ndarray) -> np.ndarray:
        """(..., 4) XYXY slice boxes -> model-grid boxes (each corner as a point)."""
        boxes = np.asarray(boxes, dtype=np.float64)
        return self.points_to_model(boxes.reshape(*boxes.shape[:-1], 2, 2)).reshape(boxes.shape)

    def image_to_model(self, image: np.ndarray, linear: bool = True) -> np.ndarray:
        """(..., rows, cols) slice-grid array -> (..., model rows, model cols); linear for
        intensities (result float64), nearest for labels/masks (dtype kept)."""
        return resample_2d(image, self.model_shape, linear)

    def logits_to_slice(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C, model rows, model cols) float logits -> (B, C, rows, cols), bilinear
        (``align_corners=False``, the convention of :func:`resample_2d`)."""
        if self.is_identity:
            return logits
        return F.interpolate(logits, tuple(self.slice_shape), mode="bilinear", align_corners=False)

    def mask_to_slice(self, mask: np.ndarray) -> np.ndarray:
        """(..., model rows, model cols) labels/bool -> (..., rows, cols), nearest neighbour."""
        return resample_2d(mask, self.slice_shape, linear=False)


def slice_geometry(
    slice_shape: tuple[int, int], pixel_spacing: tuple[float, float], square_pixels: bool = True
) -> SliceGeometry:
    """The geometry of a (rows, cols) slice with (row, col) pixel spacing in mm: square pixels
    of the finer spacing when ``square_pixels`` and the spacings differ."""
    rows, cols = (int(n) for n in slice_shape)
    row_mm, col_mm = (float(s) for s in pixel_spacing)
    if not square_pixels or abs(row_mm - col_mm) <= SQUARE_TOLERANCE * max(row_mm, col_mm):
        return SliceGeometry((rows, cols), (rows, cols))
    pixel = min(row_mm, col_mm)
    model = (max(1, int(rows * row_mm / pixel + 0.5)), max(1, int(cols * col_mm / pixel + 0.5)))
    return SliceGeometry((rows, cols), model)


def resample_2d(array: np.ndarray, shape: tuple[int, int], linear: bool) -> np.ndarray:
    """Resample the last two axes of ``array`` to ``shape`` over the same extent.

    Output pixel ``j`` samples input coordinate ``(j + 0.5) * n_in / n_out - 0.5`` (clamped to
    the image), like ``F.interpolate(..., align_corners=False)``: linear interpolation (float64
    result) or the nearest pixel (dtype kept).
    """
    out = np.asarray(array)
    for axis, n_out in ((-2, shape[0]), (-1, shape[1])):
        n_in = out.shape[axis]
        if n_in == n_out:
            continue
        source = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        if not linear:
            index = np.clip(np.floor(source + 0.5), 0, n_in - 1).astype(np.intp)
            out = np.take(out, index, axis=axis)
            continue
        source = np.clip(source, 0.0, n_in - 1)
        lower = np.floor(source).astype(np.intp)
        upper = np.minimum(lower + 1, n_in - 1)
        weight = source - lower
        weight = weight.reshape((-1, 1) if axis == -2 else (-1,))
        low_values = np.take(out, lower, axis=axis).astype(np.float64)
        high_values = np.take(out, upper, axis=axis).astype(np.float64)
        out = low_values * (1.0 - weight) + high_values * weight
    return out


# Slices -----------------------------------------------------------------------------------
def volume_slice(volume: Volume, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along numpy ``axis`` as a (rows, cols) array (see the module doc)."""
    if axis not in (0, 1, 2):
        raise ValueError(f"Axis must be 0, 1 or 2 (numpy z, y, x), not {axis}")
    n = volume.array.shape[axis]
    if not 0 <= index < n:
        raise ValueError(f"Slice {index} is outside 0..{n - 1} along axis {axis}")
    return np.take(volume.array, index, axis=axis)


def in_plane_spacing(volume: Volume, axis: int) -> tuple[float, float]:
    """(row, col) pixel spacing in mm of slices along numpy ``axis``."""
    zyx = volume.spacing_zyx
    rows_axis, cols_axis = (a for a in range(3) if a != axis)
    return float(zyx[rows_axis]), float(zyx[cols_axis])


def volume_slice_geometry(volume: Volume, axis: int, preprocessing: Preprocessing) -> SliceGeometry:
    """The :class:`SliceGeometry` of every slice along ``axis``."""
    shape = tuple(s for a, s in enumerate(volume.array.shape) if a != axis)
    return slice_geometry(shape, in_plane_spacing(volume, axis), preprocessing.square_pixels)


def slice_rgb(volume: Volume, axis: int, index: int, preprocessing: Preprocessing) -> tuple[np.ndarray, SliceGeometry]:
    """The slice as SAM's image: (model rows, model cols, 3) uint8 RGB HWC, and its geometry.

    This is the image to give ``SamPredictor.set_image`` for the same embedding.
    """
    values = volume_slice(volume, axis, index)
    geometry = volume_slice_geometry(volume, axis, preprocessing)
    if not geometry.is_identity:
        values = geometry.image_to_model(values, linear=True)
    grey = preprocessing.to_uint8(values)
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2)), geometry


@dataclass(frozen=True, eq=False)
class PreprocessedSlice:
    """One slice resized for SAM, before normalisation and padding.

    Attributes:
        pixels: (3, h, w) uint8 RGB, long side = the encoder's input side (ResizeLongestSide;
            SAM's img_size, 1024, except EfficientViT-SAM L's 512).
        original_size: (rows, cols) of the model-grid image (SamPredictor's ``original_size``).
        input_size: (h, w) of the image resized to SAM's img_size (SamPredictor's
            ``input_size``; the frame of prompts and low-resolution logits).
        geometry: slice grid <-> model grid.
    """

    pixels: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    geometry: SliceGeometry


def preprocess_slice(
    sam: Sam, volume: Volume, axis: int, index: int, preprocessing: Preprocessing
) -> PreprocessedSlice:
    """Slice ``index`` along ``axis`` resized for ``sam`` exactly as ``SamPredictor.set_image``."""
    rgb, geometry = slice_rgb(volume, axis, index, preprocessing)
    if sam.image_format != "RGB":  # as SamPredictor.set_image for an RGB image
        rgb = rgb[..., ::-1]
    side = encoder_input_side(sam.image_encoder)
    resized = ResizeLongestSide(side).apply_image(rgb)
    pixels = torch.as_tensor(resized).permute(2, 0, 1).contiguous()
    # the decoder's frame: SAM's img_size (1024) also where the encoder takes fewer pixels
    input_size = ResizeLongestSide.get_preprocess_shape(rgb.shape[0], rgb.shape[1], sam.image_encoder.img_size)
    return PreprocessedSlice(pixels, (rgb.shape[0], rgb.shape[1]), input_size, geometry)


def model_input(sam: Sam, slices: Sequence[PreprocessedSlice]) -> torch.Tensor:
    """(B, 3, side, side) float32 encoder input on ``sam.device``: each slice through
    ``sam.preprocess`` (normalise, pad) exactly as ``SamPredictor.set_torch_image``; for an
    encoder with a smaller input (EfficientViT-SAM L: 512) normalised the same way and padded
    to that side, as ``EfficientViTSam.transform``."""
    side = encoder_input_side(sam.image_encoder)
    if side == sam.image_encoder.img_size:
        return torch.cat([sam.preprocess(s.pixels.to(sam.device)[None]) for s in slices], dim=0)
    batch = []
    for s in slices:
        x = (s.pixels.to(sam.device)[None].float() - sam.pixel_mean) / sam.pixel_std
        h, w = x.shape[-2:]
        batch.append(F.pad(x, (0, side - w, 0, side - h)))
    return torch.cat(batch, dim=0)
