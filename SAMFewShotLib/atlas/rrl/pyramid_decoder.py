"""A 3D U-Net-style decoder over the encoder's feature pyramid (shared by the registration and
segmentation decoders).

Input: the 4-level pyramid of :func:`.volume_features.volume_pyramid` (fine to coarse, strides
2, 4, 8, 16 of the working grid), the working-resolution image channels, and optional extra
channels per level (the auto-prompt's mask embeddings). The decoder starts at the coarsest
level, upsamples by 2 (trilinear), concatenates the next finer level and convolves, down to the
working grid. Convolutions: 3x3x3 + LeakyReLU(0.2), no normalisation (VoxelMorph style).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

#: Default decoder widths, coarsest level (stride 16) to the working grid (stride 1).
DEFAULT_WIDTHS = (64, 48, 32, 8, 8)


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """3x3x3 convolution + LeakyReLU(0.2)."""
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2))


class PyramidDecoder(nn.Module):
    """Decodes a feature pyramid to a working-resolution feature map.

    Args:
        pyramid_channels: channels of the 4 pyramid levels, fine to coarse (strides 2..16).
        image_channels: channels of the working-resolution image input.
        widths: output channels of the 5 decoder levels, stride 16 to stride 1.
        extra_channels: extra input channels at each of the 5 levels (stride 16 to 1).
    """

    def __init__(
        self,
        pyramid_channels: Sequence[int],
        image_channels: int,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        extra_channels: Sequence[int] = (0, 0, 0, 0, 0),
    ):
        super().__init__()
        if len(pyramid_channels) != 4 or len(widths) != 5 or len(extra_channels) != 5:
            raise ValueError(
                f"Need 4 pyramid channels, 5 widths, 5 extra channels; not {pyramid_channels}, {widths}, "
                f"{extra_channels}"
            )
        skips = list(pyramid_channels[::-1]) + [image_channels]  # coarse to fine, then the image
        self.out_channels = int(widths[-1])
        levels = []
        previous = 0
        for level, (skip, width, extra) in enumerate(zip(skips, widths, extra_channels)):
            block = [conv_block(previous + skip + extra, width)]
            if level < 2:  # the two coarsest levels are cheap: one more convolution
                block.append(conv_block(width, width))
            levels.append(nn.Sequential(*block))
            previous = width
        self.levels = nn.ModuleList(levels)

    def forward(
        self,
        pyramid: Sequence[torch.Tensor],
        image: torch.Tensor,
        extras: Sequence[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """``pyramid`` (4 tensors, fine to coarse), ``image`` (B, image_channels, D, H, W) and
        ``extras`` (5 tensors or None, coarse to fine) -> (B, widths[-1], D, H, W)."""
        skips = list(pyramid[::-1]) + [image]
        extras = list(extras) if extras is not None else [None] * 5
        x = None
        for level, skip, extra in zip(self.levels, skips, extras):
            parts = [] if x is None else [F.interpolate(x, size=skip.shape[2:], mode="trilinear", align_corners=False)]
            parts.append(skip)
            if extra is not None:
                parts.append(extra)
            x = level(torch.cat(parts, dim=1))
        assert x is not None  # there are always five levels
        return x
