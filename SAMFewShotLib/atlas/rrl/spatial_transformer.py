"""Warping 3D volumes with a dense displacement field (torch ``grid_sample``).

Conventions: volumes are (B, C, D, H, W) tensors in numpy (z, y, x) order; a displacement field
is (B, 3, D, H, W) in voxels of that grid, channels (dz, dy, dx). The warped volume is
``moving(p + u(p))`` at every voxel p of the fixed grid (backward warping), trilinear, with the
border value repeated outside the volume.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def identity_grid(shape: tuple[int, ...], device=None, dtype=torch.float32) -> torch.Tensor:
    """(1, 3, D, H, W) voxel coordinates (z, y, x) of a grid of ``shape`` (D, H, W)."""
    axes = [torch.arange(n, device=device, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))[None]


def normalised_grid(flow: torch.Tensor) -> torch.Tensor:
    """``grid_sample``'s (B, D, H, W, 3) grid, (x, y, z) in [-1, 1] (align_corners=True), of the
    sampling positions p + u(p) for a (B, 3, D, H, W) displacement ``flow`` in voxels."""
    shape = tuple(flow.shape[2:])
    positions = identity_grid(shape, flow.device, flow.dtype) + flow
    scale = torch.tensor([2.0 / max(n - 1, 1) for n in shape], device=flow.device, dtype=flow.dtype)
    positions = positions * scale[None, :, None, None, None] - 1.0
    return positions.permute(0, 2, 3, 4, 1).flip(-1)


def warp(moving: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``moving`` (B, C, D, H, W) warped by ``flow`` (B, 3, D, H, W) in voxels; same shape.

    ``mode``: "bilinear" (trilinear for 3D, differentiable) or "nearest" (label values).
    """
    if moving.shape[2:] != flow.shape[2:] or flow.shape[1] != 3:
        raise ValueError(f"flow must be (B, 3) + the moving grid {tuple(moving.shape[2:])}, not {tuple(flow.shape)}")
    return F.grid_sample(moving, normalised_grid(flow), mode=mode, padding_mode="border", align_corners=True)


def resize_flow(flow: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """A displacement field (B, 3, D, H, W) in voxels resampled (trilinear) to the grid ``shape``
    covering the same extent (corner voxels aligned), with its values rescaled to the new voxels."""
    old = flow.shape[2:]
    resized = F.interpolate(flow, size=shape, mode="trilinear", align_corners=True)
    scale = torch.tensor(
        [(new - 1) / max(before - 1, 1) for new, before in zip(shape, old)], device=flow.device, dtype=flow.dtype
    )
    return resized * scale[None, :, None, None, None]


class SpatialTransformer(nn.Module):
    """:func:`warp` as a module (no parameters)."""

    def __init__(self, mode: str = "bilinear"):
        super().__init__()
        self.mode = mode

    def forward(self, moving: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return warp(moving, flow, self.mode)
