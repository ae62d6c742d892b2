"""How the shared 2D lightweight encoder feeds the 3D medical branch.

Choice (documented deviation: the paper does not say how its 2D SAM-distilled encoder meets its
3D registration network): every axial slice of the network's working volume (D, H, W) is run
through the *same* 2D encoder (:class:`.lightweight_encoder.LightweightEncoder`, same weights as
the SAM-compatible path), as one batch of D slices; each stage output (D, C_k, H/s, W/s),
s = 2^(k+1), is stacked along z and average-pooled by s along z, giving an isotropic 3D feature
pyramid (C_k, D/s, H/s, W/s), k = 0..3. No 3D convolution runs in the encoder, so the encoder
that is distilled on 1024 x 1024 SAM inputs and the one used in 3D are literally one module;
the 3D decoders mix information across slices.

The slices are fed in SAM's input domain: intensities normalised to [0, 1] are scaled to
0..255, replicated to RGB and normalised with SAM's pixel mean and standard deviation, as
``Sam.preprocess`` does for the 2D path. The 2D path sees 1024-pixel slices, the 3D path
working-resolution slices (64 pixels for a 128^3 input): the same weights at another scale.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .lightweight_encoder import LightweightEncoder

#: SAM's pixel normalisation (RGB, 0..255 scale).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
#: Stride of the coarsest encoder stage; working volume sizes must be multiples of it.
COARSEST_STRIDE = 16


def sam_domain(slices: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) intensities in [0, 1] -> (N, 3, H, W) SAM-normalised RGB (float32)."""
    mean = torch.tensor(PIXEL_MEAN, device=slices.device, dtype=slices.dtype)[None, :, None, None]
    std = torch.tensor(PIXEL_STD, device=slices.device, dtype=slices.dtype)[None, :, None, None]
    return (slices * 255.0 - mean) / std


def volume_pyramid(encoder: LightweightEncoder, volume: torch.Tensor) -> list[torch.Tensor]:
    """The 3D feature pyramid of ``volume`` (B, 1, D, H, W) float32 in [0, 1], (z, y, x) order.

    Returns:
        4 tensors (B, encoder.widths[k], D/s, H/s, W/s), s = 2^(k+1), k = 0..3. D, H and W
        must be multiples of 16.
    """
    b, c, d, h, w = volume.shape
    if c != 1 or any(n % COARSEST_STRIDE for n in (d, h, w)):
        raise ValueError(
            f"volume must be (B, 1, D, H, W) with D, H, W multiples of {COARSEST_STRIDE}, not {tuple(volume.shape)}"
        )
    slices = volume.permute(0, 2, 1, 3, 4).reshape(b * d, 1, h, w)
    pyramid = []
    for k, features in enumerate(encoder.stages(sam_domain(slices))):
        stride = 2 ** (k + 1)
        _, channels, fh, fw = features.shape
        stacked = features.reshape(b, d, channels, fh, fw).permute(0, 2, 1, 3, 4)
        pooled = F.avg_pool3d(stacked, kernel_size=(stride, 1, 1), stride=(stride, 1, 1))
        pyramid.append(pooled.contiguous(memory_format=torch.channels_last_3d))
    return pyramid
