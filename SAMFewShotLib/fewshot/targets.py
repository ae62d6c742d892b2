"""Drawn masks in SAM's frames: target embeddings (masked average pooling) and training targets.

A slice mask (rows, cols) on the volume slice's grid goes the way the slice's pixels went into
SAM (sam/preprocess.py): to the square-pixel model grid, resized to ``input_size`` (bilinear,
so each input pixel holds the fraction of it inside the mask) and zero-padded to the
``image_size`` x ``image_size`` input frame (1024 for SAM). Average pooling that frame gives:

- the (h, w) = (64, 64) weights of the image embedding cells (pool 16): the target embedding of
  the slice is the embedding averaged over the cells with these weights (Xie et al.);
- the (4h, 4w) = (256, 256) target of the decoder's low-resolution output (pool 4), with the
  pixels that cover the image (not the padding) marked valid.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from ..sam.embedding_cache import SliceEmbedding


def input_frame_mask(mask: np.ndarray, embedding: SliceEmbedding, image_size: int) -> torch.Tensor:
    """The slice mask in SAM's padded input frame.

    Args:
        mask: (rows, cols) bool or [0, 1] float on the volume slice's grid.
        embedding: the slice's embedding record (sizes and slice <-> model grid geometry).
        image_size: side of SAM's square input (``sam.image_encoder.img_size``, 1024).

    Returns:
        (image_size, image_size) float32 in [0, 1]: the part of each input pixel inside the mask,
        0 in the padding.
    """
    mask = np.asarray(mask)
    if mask.shape != tuple(embedding.slice_shape):
        raise ValueError(f"Mask shape {mask.shape} is not the slice shape {tuple(embedding.slice_shape)}")
    values = mask.astype(np.float32)
    geometry = embedding.geometry
    if not geometry.is_identity:
        values = geometry.image_to_model(values, linear=True).astype(np.float32)
    h, w = (int(n) for n in embedding.input_size)
    frame = F.interpolate(torch.from_numpy(np.ascontiguousarray(values))[None, None], (h, w), mode="bilinear",
                          align_corners=False, antialias=True)
    return F.pad(frame.clamp_(0.0, 1.0), (0, image_size - w, 0, image_size - h))[0, 0]


def pooled(frame: torch.Tensor, grid: int) -> torch.Tensor:
    """(S, S) input-frame mask -> (grid, grid) mean over blocks of S / grid pixels (float32)."""
    size = frame.shape[-1]
    if size % grid:
        raise ValueError(f"The input frame {size} is not a multiple of the grid {grid}")
    return F.avg_pool2d(frame[None, None], size // grid)[0, 0]


def masked_average(embedding: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Target embedding: the (C, h, w) embedding averaged over its cells with (h, w) weights.

    Returns (C,) float32. ValueError when the weights are all zero (an empty mask).
    """
    total = float(weights.sum())
    if total <= 0.0:
        raise ValueError("Cannot average an embedding under an empty mask")
    return (embedding * weights.unsqueeze(0)).sum(dim=(1, 2)) / total


def valid_region(embedding: SliceEmbedding, image_size: int, size: int) -> torch.Tensor:
    """(size, size) bool: the output pixels that cover the image in an output frame of ``size``
    (the rest is padding; SAM's ``postprocess_masks`` crops it away)."""
    scale = size / image_size
    rows, cols = (math.ceil(n * scale) for n in embedding.input_size)
    valid = torch.zeros((size, size), dtype=torch.bool)
    valid[:rows, :cols] = True
    return valid
