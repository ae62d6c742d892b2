"""Stitching: n x n consecutive slices of a volume in one SAM-sized mosaic, and back (SFR, Li et
al. 2024, Sec. 3.1).

A mosaic is a (size, size) image (size = SAM's 1024) cut into an n x n grid of square tiles of
``tile = size // n`` pixels (the ``size - n * tile`` pixels left at the right and bottom stay 0).
Tile ``t`` (row-major: tile row ``t // n``, tile column ``t % n``) holds slice ``first + t``
along the volume's ``axis``; a tile past the last slice is *blank* (all 0, flagged in
:attr:`MosaicLayout.blank`).

Inside its tile a slice keeps its physical aspect ratio (square pixels, as
:func:`SAMFewShotLib.sam.preprocess.slice_geometry`): its (rows, cols) grid of (row_mm, col_mm)
pixels is resampled to ``content = (h, w)`` square pixels with the long side equal to the tile,
placed at the tile's top-left corner (the rest of the tile is padding, as SAM pads at the
bottom and right). Resampling is :func:`SAMFewShotLib.sam.preprocess.resample_2d` (the
``align_corners=False`` convention): linear for intensities (windowed to uint8 with a
:class:`~SAMFewShotLib.sam.preprocess.Preprocessing`), nearest for labels.

:func:`unstitch` is the inverse: each tile's content resampled back to the slice grid (nearest
for labels, linear for probabilities). For labels the round trip ``unstitch(stitch(labels))``
is exact whenever the content is at least as large as the slice along both axes
(``h >= rows`` and ``w >= cols``), which :func:`default_grid` guarantees: with nearest
neighbour, slice pixel ``i`` maps to content pixel ``round((i + 0.5) * h / rows - 0.5)``, whose
own nearest source is ``i`` again when ``h >= rows``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..sam.preprocess import Preprocessing, in_plane_spacing, resample_2d
from ..volume import Volume

#: Mosaic edge in pixels (SAM's input size).
MOSAIC_SIZE = 1024


@dataclass(frozen=True)
class MosaicLayout:
    """Where the slices of one mosaic lie.

    Attributes:
        axis: numpy axis (0 z, 1 y, 2 x) the slices are taken along.
        grid: n, the mosaic holds n x n tiles.
        size: mosaic edge in pixels.
        slice_shape: (rows, cols) of a volume slice.
        content_shape: (h, w) of a slice inside its tile (square pixels, long side = tile).
        indices: slice index per tile (row-major), -1 for a blank tile; length n * n.
    """

    axis: int
    grid: int
    size: int
    slice_shape: tuple[int, int]
    content_shape: tuple[int, int]
    indices: tuple[int, ...]

    @property
    def tile(self) -> int:
        """Tile edge in pixels."""
        return self.size // self.grid

    @property
    def blank(self) -> tuple[bool, ...]:
        """Per tile: True when it holds no slice."""
        return tuple(i < 0 for i in self.indices)

    def tile_box(self, t: int) -> tuple[int, int, int, int]:
        """(row0, col0, row1, col1) of tile ``t``'s content in the mosaic (end exclusive)."""
        row0, col0 = (t // self.grid) * self.tile, (t % self.grid) * self.tile
        return row0, col0, row0 + self.content_shape[0], col0 + self.content_shape[1]

    def content_mask(self) -> np.ndarray:
        """(size, size) bool: True on the pixels that show a slice (not blank, not padding)."""
        mask = np.zeros((self.size, self.size), dtype=bool)
        for t, index in enumerate(self.indices):
            if index >= 0:
                r0, c0, r1, c1 = self.tile_box(t)
                mask[r0:r1, c0:c1] = True
        return mask


def content_shape(slice_shape: tuple[int, int], pixel_spacing: tuple[float, float], tile: int) -> tuple[int, int]:
    """(h, w): a (rows, cols) slice of (row_mm, col_mm) pixels at square pixels, long side ``tile``."""
    rows, cols = (int(n) for n in slice_shape)
    height_mm, width_mm = rows * float(pixel_spacing[0]), cols * float(pixel_spacing[1])
    scale = tile / max(height_mm, width_mm)
    return max(1, min(tile, int(height_mm * scale + 0.5))), max(1, min(tile, int(width_mm * scale + 0.5)))


def _in_plane_shape(volume: Volume, axis: int) -> tuple[int, int]:
    """(rows, cols) of the slices along ``axis``."""
    rows, cols = (s for a, s in enumerate(volume.shape) if a != axis)
    return rows, cols


def default_grid(volume: Volume, axis: int, size: int = MOSAIC_SIZE, largest: int = 4) -> int:
    """The largest n <= ``largest`` whose tiles still hold a slice without down-sampling it
    (content at least the slice's rows and cols), so that :func:`unstitch` is exact; 1 when even
    a whole mosaic is smaller than the slice."""
    shape = _in_plane_shape(volume, axis)
    spacing = in_plane_spacing(volume, axis)
    for n in range(largest, 0, -1):
        h, w = content_shape(shape, spacing, size // n)
        if h >= shape[0] and w >= shape[1]:
            return n
    return 1


def plan_mosaics(volume: Volume, axis: int, grid: int, size: int = MOSAIC_SIZE) -> list[MosaicLayout]:
    """The layouts covering every slice along ``axis`` once, n * n consecutive slices per mosaic
    (the last mosaic's tiles past the last slice are blank).

    Raises:
        ValueError: axis not 0/1/2, grid < 1 or tiles under 1 pixel.
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"Axis must be 0, 1 or 2 (numpy z, y, x), not {axis}")
    if isinstance(grid, bool) or not isinstance(grid, int) or not 1 <= grid <= size:
        raise ValueError(f"The mosaic grid must be an integer in [1, {size}], not {grid!r}")
    shape = _in_plane_shape(volume, axis)
    content = content_shape(shape, in_plane_spacing(volume, axis), size // grid)
    per_mosaic = grid * grid
    count = volume.shape[axis]
    layouts = []
    for first in range(0, count, per_mosaic):
        indices = tuple(i if i < count else -1 for i in range(first, first + per_mosaic))
        layouts.append(MosaicLayout(axis, grid, size, shape, content, indices))
    return layouts


def stitch(array: np.ndarray, layout: MosaicLayout, *, linear: bool) -> np.ndarray:
    """One mosaic of ``array``: (size, size), ``array``'s dtype for nearest (labels), float64 for
    linear (intensities).

    Args:
        array: (z, y, x) values of the volume the layout was planned for.
        layout: from :func:`plan_mosaics`.
        linear: linear resampling (intensities) or nearest (labels).
    """
    slices = np.moveaxis(np.asarray(array), layout.axis, 0)
    if slices.shape[1:] != tuple(layout.slice_shape):
        raise ValueError(f"The array's slices are {slices.shape[1:]}, the layout's {layout.slice_shape}")
    mosaic = np.zeros((layout.size, layout.size), dtype=np.float64 if linear else slices.dtype)
    for t, index in enumerate(layout.indices):
        if index < 0:
            continue
        r0, c0, r1, c1 = layout.tile_box(t)
        mosaic[r0:r1, c0:c1] = resample_2d(slices[index], layout.content_shape, linear)
    return mosaic


def stitch_image(volume: Volume, layout: MosaicLayout, preprocessing: Preprocessing) -> np.ndarray:
    """The mosaic of ``volume``'s intensities as SAM's image: (size, size, 3) uint8 RGB HWC,
    windowed with ``preprocessing`` after resampling; blank tiles and padding are 0."""
    grey = preprocessing.to_uint8(stitch(volume.array, layout, linear=True))
    grey[~layout.content_mask()] = 0
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def unstitch(mosaic: np.ndarray, layout: MosaicLayout, *, linear: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each non-blank tile back on its slice's grid.

    Args:
        mosaic: (..., size, size) labels (``linear=False``, nearest) or probabilities/logits
            (``linear=True``, float64); leading axes (e.g. channels) are kept.
        layout: the layout it was stitched with.

    Returns:
        (slices, indices): slices (k, ..., rows, cols) for the k non-blank tiles in tile order,
        and their slice indices (k,) int along ``layout.axis``.
    """
    mosaic = np.asarray(mosaic)
    if mosaic.shape[-2:] != (layout.size, layout.size):
        raise ValueError(f"A mosaic must be (..., {layout.size}, {layout.size}), not {mosaic.shape}")
    out, indices = [], []
    for t, index in enumerate(layout.indices):
        if index < 0:
            continue
        r0, c0, r1, c1 = layout.tile_box(t)
        out.append(resample_2d(mosaic[..., r0:r1, c0:c1], layout.slice_shape, linear))
        indices.append(index)
    lead = mosaic.shape[:-2]
    dtype = np.float64 if linear else mosaic.dtype
    if not out:
        return np.zeros((0, *lead, *layout.slice_shape), dtype=dtype), np.zeros(0, dtype=np.intp)
    return np.stack(out).astype(dtype, copy=False), np.asarray(indices, dtype=np.intp)


def unstitch_volume(
    mosaics: Sequence[np.ndarray], layouts: Sequence[MosaicLayout], shape: tuple[int, int, int], *, linear: bool
) -> np.ndarray:
    """The (z, y, x) volume of ``shape`` assembled from every mosaic of :func:`plan_mosaics`
    (each (size, size)); float64 for ``linear``, else the mosaics' dtype."""
    if len(mosaics) != len(layouts):
        raise ValueError(f"{len(mosaics)} mosaics for {len(layouts)} layouts")
    if not layouts:
        raise ValueError("No mosaic to unstitch")
    axis = layouts[0].axis
    dtype = np.float64 if linear else np.asarray(mosaics[0]).dtype
    moved = np.zeros((shape[axis],) + tuple(s for a, s in enumerate(shape) if a != axis), dtype=dtype)
    for mosaic, layout in zip(mosaics, layouts):
        slices, indices = unstitch(mosaic, layout, linear=linear)
        moved[indices] = slices
    return np.moveaxis(moved, 0, axis)


def mosaic_count(n_slices: int, grid: int) -> int:
    """Mosaics needed for ``n_slices`` slices at n = ``grid``."""
    return math.ceil(n_slices / (grid * grid))
