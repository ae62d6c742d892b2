"""The segmentation loss of the online optimiser and the meta-learner: balanced BCE + IoU loss."""

from __future__ import annotations

import torch
from torch.nn import functional as F

_EPS = 1.0


def balanced_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with foreground and background weighted equally: the mean of the
    foreground pixels' BCE and the background pixels' BCE (only one of them when the other
    class is absent). ``logits`` and ``target`` (float 0/1) have the same shape."""
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    positive = target > 0.5
    parts = [per_pixel[mask].mean() for mask in (positive, ~positive) if bool(mask.any())]
    return torch.stack(parts).mean()


def iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft IoU of sigmoid(logits) and the target, smoothed by one pixel (0 for a perfect
    prediction, also of an empty target)."""
    probability = torch.sigmoid(logits)
    intersection = (probability * target).sum()
    union = (probability + target - probability * target).sum()
    return 1.0 - (intersection + _EPS) / (union + _EPS)


def segmentation_loss(logits: torch.Tensor, mask) -> torch.Tensor:
    """Balanced BCE + IoU loss of (rows, cols) logits against a (rows, cols) bool mask."""
    target = torch.as_tensor(mask, dtype=logits.dtype, device=logits.device)
    return balanced_bce(logits, target) + iou_loss(logits, target)
