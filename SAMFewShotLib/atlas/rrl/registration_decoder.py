"""The registration decoder: a dense displacement field from the moving and fixed feature pyramids.

Besides the two images' encoder pyramids, every decoder level also sees both images average-pooled
to its stride (two channels), as a VoxelMorph U-Net sees raw intensities: this makes the
registration learn several times faster than from the learnt features alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .pyramid_decoder import DEFAULT_WIDTHS, PyramidDecoder


class RegistrationDecoder(nn.Module):
    """(moving, fixed) pyramids and images -> displacement (B, 3, D, H, W) in working-grid voxels,
    channels (dz, dy, dx), defined on the fixed grid (see :mod:`.spatial_transformer`).

    Args:
        pyramid_channels: channels of the encoder's 4 pyramid levels (fine to coarse); the
            moving and fixed levels are concatenated.
        widths: decoder widths (stride 16 to stride 1).
    """

    def __init__(self, pyramid_channels: Sequence[int], widths: Sequence[int] = DEFAULT_WIDTHS):
        super().__init__()
        self.decoder = PyramidDecoder([2 * c for c in pyramid_channels], 2, widths, (2, 2, 2, 2, 0))
        self.flow = nn.Conv3d(self.decoder.out_channels, 3, 3, padding=1)
        # Start near the identity transform (VoxelMorph's initialisation).
        nn.init.normal_(self.flow.weight, mean=0.0, std=1e-5)
        assert self.flow.bias is not None  # Conv3d has a bias by default
        nn.init.zeros_(self.flow.bias)

    def forward(
        self,
        moving_pyramid: Sequence[torch.Tensor],
        fixed_pyramid: Sequence[torch.Tensor],
        moving: torch.Tensor,
        fixed: torch.Tensor,
    ) -> torch.Tensor:
        """Pyramids as :func:`.volume_features.volume_pyramid` gives them; ``moving``/``fixed``
        (B, 1, D, H, W) working-resolution intensities -> flow (B, 3, D, H, W)."""
        pyramid = [torch.cat([m, f], dim=1) for m, f in zip(moving_pyramid, fixed_pyramid)]
        images = torch.cat([moving, fixed], dim=1)
        pooled = [F.avg_pool3d(images, stride) for stride in (16, 8, 4, 2)]
        return self.flow(self.decoder(pyramid, images, [*pooled, None]))
