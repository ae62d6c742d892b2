"""The segmentation decoder: class logits from one image's feature pyramid."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .pyramid_decoder import DEFAULT_WIDTHS, PyramidDecoder


class SegmentationDecoder(nn.Module):
    """Pyramid + image -> logits (B, n_classes, D, H, W) on the working grid (class 0 = background).

    Args:
        pyramid_channels: channels of the encoder's 4 pyramid levels (fine to coarse).
        n_classes: background + one class per atlas label.
        widths: decoder widths (stride 16 to stride 1).
        extra_channels: extra inputs per decoder level (the auto-prompt's mask embeddings,
            see :mod:`.prompt_decoder`).
    """

    def __init__(
        self,
        pyramid_channels: Sequence[int],
        n_classes: int,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        extra_channels: Sequence[int] = (0, 0, 0, 0, 0),
    ):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2 (background + labels), not {n_classes}")
        self.decoder = PyramidDecoder(pyramid_channels, 1, widths, extra_channels)
        self.head = nn.Conv3d(self.decoder.out_channels, n_classes, 1)

    def forward(
        self,
        pyramid: Sequence[torch.Tensor],
        image: torch.Tensor,
        extras: Sequence[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """``image`` (B, 1, D, H, W) working-resolution intensities -> logits (B, n_classes, D, H, W)."""
        return self.head(self.decoder(pyramid, image, extras))
