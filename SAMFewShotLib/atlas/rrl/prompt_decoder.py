"""The auto-prompting (AP) segmentation decoder of the medical branch.

The general branch's coarse mask (class probabilities, B x n_classes x D x H x W on the working
grid) is the prompt: like SAM's dense mask prompt it is embedded by a small convolutional stack
(here 3D: the mask average-pooled to the stride of each decoder level, then a 1x1x1 convolution), and
the embeddings are fed to every level but the finest (for speed) of a
:class:`.segmentation_decoder.SegmentationDecoder` that decodes the medical encoder's pyramid. The
prompt is an input: no gradient flows back into the general branch through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .pyramid_decoder import DEFAULT_WIDTHS
from .segmentation_decoder import SegmentationDecoder

#: Channels of the mask-prompt embedding at each decoder level.
PROMPT_CHANNELS = 8
#: Strides of the decoder levels that take the prompt, coarse to fine (all but the working grid).
LEVEL_STRIDES = (16, 8, 4, 2)


class AutoPromptDecoder(nn.Module):
    """Medical pyramid + image + the general branch's coarse mask -> logits (B, n_classes, D, H, W)."""

    def __init__(self, pyramid_channels: Sequence[int], n_classes: int, widths: Sequence[int] = DEFAULT_WIDTHS):
        super().__init__()
        self.embed = nn.ModuleList(
            nn.Sequential(nn.Conv3d(n_classes, PROMPT_CHANNELS, 1), nn.LeakyReLU(0.2))
            for _ in LEVEL_STRIDES
        )
        self.decoder = SegmentationDecoder(
            pyramid_channels, n_classes, widths, (PROMPT_CHANNELS,) * len(LEVEL_STRIDES) + (0,)
        )

    def forward(self, pyramid: Sequence[torch.Tensor], image: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """``prompt`` (B, n_classes, D, H, W) class probabilities of the general branch."""
        prompt = prompt.detach()
        extras = []
        for stride, embed in zip(LEVEL_STRIDES, self.embed):
            extras.append(embed(F.avg_pool3d(prompt, stride)))
        extras.append(None)
        return self.decoder(pyramid, image, extras)
