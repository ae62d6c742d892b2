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
from segment_anything.utils.transforms import ResizeLongestSide
from torch.nn import functional as F

from ..sam.preprocess import PreprocessedSlice, Preprocessing, in_plane_spacing, preprocess_slice, volume_slice
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


def support_mask_grid(mask: np.ndarray, item: PreprocessedSlice, image_size: int) -> torch.Tensor:
    """(1, 1, image_size/16, image_size/16) float32 in [0, 1]: M', the support mask on the
    embedding grid (the fraction of each cell it covers; 0 in the padding)."""
    return frame_fraction(mask, item, image_size, image_size // PATCH)


def prompt_grid_points(
    prior: np.ndarray, item: PreprocessedSlice, image_size: int, positive: int, negative: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-sampled points of a prior mask (:func:`~SAMFewShotLib.meta.self_sampling_prompt.sample_points`)
    in grid_sample's [-1, 1] frame of the query's image embedding.

    Returns:
        ((1, N, 2) float32 (x, y) in [-1, 1], (1, N) int64 labels: 1 positive, 0 negative).
    """
    from .self_sampling_prompt import sample_points

    rows_cols, labels = sample_points(prior, positive, negative, rng)
    xy = rows_cols[:, ::-1].copy()
    coords = ResizeLongestSide(image_size).apply_coords(item.geometry.points_to_model(xy), item.original_size)
    grid = (np.asarray(coords, np.float64).reshape(-1, 2) + 0.5) / image_size * 2.0 - 1.0
    return torch.as_tensor(grid, dtype=torch.float32)[None], torch.as_tensor(labels, dtype=torch.int64)[None]
