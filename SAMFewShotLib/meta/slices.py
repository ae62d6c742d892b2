"""Slices, masks and prompts between the volume's slice grid and SAM's input frame.

A slice goes to the model as :class:`~SAMFewShotLib.sam.preprocess.PreprocessedSlice` (the
exact ``SamPredictor.set_image`` pipeline); masks are (rows, cols) bool arrays on the slice
grid, in the canonical orientation of :class:`~SAMFewShotLib.annotation.SparseAnnotation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import ndimage
from segment_anything.utils.transforms import ResizeLongestSide
from torch.nn import functional as F

from ..sam.preprocess import PreprocessedSlice, Preprocessing, in_plane_spacing, preprocess_slice, volume_slice
from ..sam.prompts import component_prompts
from ..volume import Volume

#: Pixels of SAM's input frame per embedding-grid cell.
PATCH = 16


@dataclass(frozen=True, eq=False)
class SliceExample:
    """One slice with its mask (a support pair, or a query with its reference mask).

    Attributes:
        index: slice index along the annotated axis (-1 for a synthetic copy).
        item: the slice prepared for SAM.
        mask: (rows, cols) bool on the slice grid.
    """

    index: int
    item: PreprocessedSlice
    mask: np.ndarray


def prepare(sam, volume: Volume, axis: int, index: int, preprocessing: Preprocessing, mask: np.ndarray) -> SliceExample:
    """The :class:`SliceExample` of slice ``index`` along numpy ``axis`` with its (rows, cols) mask."""
    return SliceExample(index, preprocess_slice(sam, volume, axis, index, preprocessing), np.asarray(mask, bool))


def shifted(
    sam, volume: Volume, axis: int, example: SliceExample, shift: tuple[int, int], preprocessing: Preprocessing
) -> SliceExample:
    """A copy of ``example`` with image and mask moved by ``shift`` = (rows, cols) pixels
    (edge values fill the image, background fills the mask); index -1."""
    values = volume_slice(volume, axis, example.index)
    image = _shift(values, shift, mode="edge")
    mask = _shift(example.mask, shift, mode="constant")
    row_mm, col_mm = in_plane_spacing(volume, axis)
    single = Volume(image[None].astype(np.float32), spacing=(col_mm, row_mm, 1.0))
    return SliceExample(-1, preprocess_slice(sam, single, 0, 0, preprocessing), mask)


def _shift(array: np.ndarray, shift: tuple[int, int], mode: Literal["edge", "constant"]) -> np.ndarray:
    rows, cols = array.shape
    dr, dc = (int(s) for s in shift)
    padded = np.pad(array, ((abs(dr), abs(dr)), (abs(dc), abs(dc))), mode=mode)
    return padded[abs(dr) - dr : abs(dr) - dr + rows, abs(dc) - dc : abs(dc) - dc + cols]


def frame_fraction(mask: np.ndarray, item: PreprocessedSlice, image_size: int, grid: int) -> torch.Tensor:
    """(1, 1, grid, grid) float32: the fraction of each cell of SAM's padded ``image_size``
    input frame that ``mask`` (rows, cols, slice grid) covers (0 in the padding)."""
    values = item.geometry.image_to_model(np.asarray(mask, np.float32), linear=True)
    tensor = torch.as_tensor(np.ascontiguousarray(values), dtype=torch.float32)[None, None]
    resized = F.interpolate(tensor, size=tuple(item.input_size), mode="bilinear", align_corners=False)
    frame = torch.zeros(1, 1, image_size, image_size)
    frame[..., : item.input_size[0], : item.input_size[1]] = resized
    return F.adaptive_avg_pool2d(frame, grid)


def support_weights(mask: np.ndarray, item: PreprocessedSlice, sigma: float, image_size: int) -> torch.Tensor:
    """(1, 1, image_size/16, image_size/16) float32 in [0, 1]: the support mask on the
    embedding grid, Gaussian-blurred by ``sigma`` cells and scaled to a maximum of 1."""
    grid = image_size // PATCH
    fraction = frame_fraction(mask, item, image_size, grid)[0, 0].numpy()
    blurred = ndimage.gaussian_filter(fraction, sigma, mode="constant")
    peak = float(blurred.max())
    if peak > 0:
        blurred = blurred / peak
    return torch.as_tensor(blurred, dtype=torch.float32)[None, None]


def prompt_points(
    mask: np.ndarray, item: PreprocessedSlice, image_size: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Self-sampled points of a prior mask in SAM's input frame, or None for an empty mask.

    The largest connected component gives a foreground point (its centroid, or its most
    interior pixel) and four background points (its bounding-box corners), as SAM-MPA's
    prompts (:func:`~SAMFewShotLib.sam.prompts.component_prompts`).

    Returns:
        ((1, 5, 2) float32 (X, Y) coordinates, (1, 5) int64 labels), or None.
    """
    components = component_prompts(np.asarray(mask, bool))
    if not components:
        return None
    first = components[0]
    model_points = item.geometry.points_to_model(first.points)
    coords = ResizeLongestSide(image_size).apply_coords(model_points, item.original_size)
    return (
        torch.as_tensor(coords, dtype=torch.float32)[None],
        torch.as_tensor(first.labels, dtype=torch.int64)[None],
    )
