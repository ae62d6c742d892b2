"""Losses of the joint registration-segmentation training.

All inputs are (B, C, D, H, W) float tensors on one grid, (z, y, x) order.

- :func:`ncc_loss`: similarity, 1 - mean local normalised cross-correlation (box window).
- :func:`smoothness_loss`: mean squared forward difference of a displacement field (voxels).
- :func:`dice_loss`: 1 - mean soft Dice over the foreground classes.
- :func:`soft_cross_entropy`: cross-entropy of logits against (soft) class probabilities.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def ncc_loss(fixed: torch.Tensor, warped: torch.Tensor, window: int = 9, eps: float = 1e-3) -> torch.Tensor:
    """1 - mean local NCC of ``fixed`` and ``warped`` (B, 1, D, H, W) over ``window``^3 boxes; 0 = perfect.

    VoxelMorph's squared-correlation form cc = cov^2 / (var_f var_w + eps), in [0, 1], computed
    on the images standardised over the whole volume (zero mean, unit variance), so that the
    loss does not depend on the intensity scale (CT soft tissue spans a few hundredths of a
    [-1000, 1000] HU window) and flat regions (local variance << global) count as cc = 0.
    """
    if fixed.shape != warped.shape:
        raise ValueError(f"fixed and warped must have one shape, not {tuple(fixed.shape)} and {tuple(warped.shape)}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd number >= 1, not {window}")

    def mean(x: torch.Tensor) -> torch.Tensor:
        # separable box mean (3 x window taps instead of window^3), exact: the clipped box's
        # voxel count factorises over the axes
        for kernel in ((window, 1, 1), (1, window, 1), (1, 1, window)):
            padding = tuple(k // 2 for k in kernel)
            x = F.avg_pool3d(x, kernel, stride=1, padding=padding, count_include_pad=False)
        return x

    def standardise(x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=(2, 3, 4), keepdim=True)
        return centred / (centred.square().mean(dim=(2, 3, 4), keepdim=True).sqrt() + 1e-8)

    fixed, warped = standardise(fixed), standardise(warped)
    products = torch.cat([fixed, warped, fixed * warped, fixed * fixed, warped * warped], 1)
    mf, mw, mfw, mff, mww = mean(products).unbind(1)
    cov = mfw - mf * mw
    var_f = (mff - mf * mf).clamp_min(0)
    var_w = (mww - mw * mw).clamp_min(0)
    cc = cov * cov / (var_f * var_w + eps)
    return 1.0 - cc.mean()


def smoothness_loss(flow: torch.Tensor) -> torch.Tensor:
    """Mean squared forward difference of ``flow`` (B, 3, D, H, W) along z, y and x (voxels^2)."""
    dz = flow[:, :, 1:] - flow[:, :, :-1]
    dy = flow[:, :, :, 1:] - flow[:, :, :, :-1]
    dx = flow[:, :, :, :, 1:] - flow[:, :, :, :, :-1]
    return (dz.square().mean() + dy.square().mean() + dx.square().mean()) / 3.0


def dice_loss(probabilities: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """1 - mean soft Dice of classes 1.. of ``probabilities`` and ``target`` (B, C, D, H, W),
    both class probabilities (one-hot or soft). Classes absent from both count as Dice 1."""
    if probabilities.shape != target.shape:
        raise ValueError(f"Shapes differ: {tuple(probabilities.shape)} and {tuple(target.shape)}")
    dims = (2, 3, 4)
    p, t = probabilities[:, 1:], target[:, 1:]
    intersection = (p * t).sum(dims)
    total = p.sum(dims) + t.sum(dims)
    return 1.0 - ((2.0 * intersection + eps) / (total + eps)).mean()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over voxels of -sum_c target_c log softmax(logits)_c; ``target`` (B, C, D, H, W) probabilities."""
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice + cross-entropy of ``logits`` against class probabilities ``target`` (B, C, D, H, W)."""
    return dice_loss(torch.softmax(logits, dim=1), target) + soft_cross_entropy(logits, target)
