"""SAM-MPA auto-prompts from a coarse mask, one prompt set per connected component.

For every connected component of a slice's coarse mask (from ``register`` or ``interpolate``):
- a foreground point at the component's centroid, or, when the centroid falls outside the
  component (C-shapes, rings), at the interior maximum of its distance transform;
- background points at the four corners of its bounding box;
- the bounding box itself (XYXY);
- the sigmoid-softened coarse mask as SAM's 256x256 low-resolution mask prompt.

Coordinates follow SAM: points are (X, Y) = (column, row) in pixels of the original slice; the
slice arrays are (rows, cols). Nothing here needs torch except :func:`mask_prompt`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Gaussian blur (pixels of the original slice) that softens the coarse mask's edge ...
SOFT_EDGE_PX = 1.5
#: ... and the logit range the softened mask is mapped to (sigmoid(6) ~ 0.998).
MAX_LOGIT = 6.0
#: Components smaller than this (pixels) get no prompt of their own.
MIN_COMPONENT_PX = 4


@dataclass
class ComponentPrompt:
    """SAM prompts for one connected component of a coarse mask.

    Attributes:
        points: (5, 2) float32 (X, Y) pixel coordinates: the foreground point, then the four
            bounding-box corners.
        labels: (5,) int: 1 for the foreground point, 0 for the background corners.
        box: (4,) float32 XYXY box of the component (pixel edges, inclusive-exclusive).
        component: (rows, cols) bool: the component itself (for the union and for the mask prompt).
    """

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray
    component: np.ndarray


def interior_point(component: np.ndarray) -> tuple[float, float]:
    """(row, col) of the centroid when it lies inside ``component``, else of the maximum of the
    component's distance transform (its most interior pixel)."""
    rows, cols = np.nonzero(component)
    centre = (float(rows.mean()), float(cols.mean()))
    r, c = int(round(centre[0])), int(round(centre[1]))
    if component[r, c]:
        return centre
    depth = ndimage.distance_transform_edt(component)
    deepest_r, deepest_c = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return float(deepest_r), float(deepest_c)


def component_prompts(coarse: np.ndarray, min_pixels: int = MIN_COMPONENT_PX) -> list[ComponentPrompt]:
    """One :class:`ComponentPrompt` per 8-connected component of a (rows, cols) coarse mask,
    largest first; components under ``min_pixels`` are skipped."""
    labelled, count = ndimage.label(coarse > 0, structure=np.ones((3, 3), bool))
    prompts = []
    for index, found in enumerate(ndimage.find_objects(labelled), start=1):
        component = labelled == index
        if component.sum() < min_pixels:
            continue
        row_lo, row_hi = found[0].start, found[0].stop
        col_lo, col_hi = found[1].start, found[1].stop
        r, c = interior_point(component)
        corners = [(col_lo, row_lo), (col_hi - 1, row_lo), (col_lo, row_hi - 1), (col_hi - 1, row_hi - 1)]
        points = np.array([(c, r), *corners], dtype=np.float32)
        labels = np.array([1, 0, 0, 0, 0], dtype=np.int64)
        box = np.array([col_lo, row_lo, col_hi, row_hi], dtype=np.float32)
        prompts.append(ComponentPrompt(points=points, labels=labels, box=box, component=component))
    prompts.sort(key=lambda p: -int(p.component.sum()))
    return prompts


def soft_logits(mask: np.ndarray) -> np.ndarray:
    """(rows, cols) float32 logits of the sigmoid-softened mask: the mask blurred by
    SOFT_EDGE_PX, mapped linearly to [-MAX_LOGIT, MAX_LOGIT] (0 on the blurred edge)."""
    soft = ndimage.gaussian_filter(mask.astype(np.float32), SOFT_EDGE_PX)
    return ((2.0 * soft - 1.0) * MAX_LOGIT).astype(np.float32)


def mask_prompt(logits: np.ndarray, input_size: tuple[int, int], image_size: int = 1024):
    """SAM's (1, 256, 256) low-resolution mask prompt from (rows, cols) logits on the original
    slice: resized like the image (longest side -> ``input_size``), padded to ``image_size``
    square with background logits (bottom/right, where Sam.preprocess pads), downsampled 4x.

    Returns a float32 torch tensor of shape (1, 256, 256)."""
    import torch
    import torch.nn.functional as F

    tensor = torch.as_tensor(logits, dtype=torch.float32)[None, None]
    resized = F.interpolate(tensor, size=tuple(input_size), mode="bilinear", align_corners=False)
    padded = torch.full((1, 1, image_size, image_size), -MAX_LOGIT)
    padded[..., : input_size[0], : input_size[1]] = resized
    low = F.interpolate(padded, size=(image_size // 4, image_size // 4), mode="bilinear", align_corners=False)
    return low[0]
