"""The segmentation loss of the online optimiser and the meta-learner: BCE + IoU loss.

The per-pixel mean BCE (not the class-balanced one, which weights the few target pixels as much
as the whole background and so pushes the boundary outwards: +15-20 % area on the test phantom).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

_EPS = 1.0


def iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft IoU of sigmoid(logits) and the target, smoothed by one pixel (0 for a perfect
    prediction, also of an empty target)."""
    probability = torch.sigmoid(logits)
    intersection = (probability * target).sum()
    union = (probability + target - probability * target).sum()
    return 1.0 - (intersection + _EPS) / (union + _EPS)


def segmentation_loss(logits: torch.Tensor, mask) -> torch.Tensor:
    """Mean BCE + IoU loss of (rows, cols) logits against a (rows, cols) bool mask."""
    target = torch.as_tensor(mask, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, target) + iou_loss(logits, target)
