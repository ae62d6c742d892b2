"""How the shared 2D lightweight encoder feeds the 3D branches.

Choice (documented deviation: the paper does not say how its 2D SAM-distilled encoder meets its
3D registration network): every axial slice of the network's working volume (D, H, W) is run
through the *same* 2D encoder (:class:`.lightweight_encoder.LightweightEncoder`) as one batch
of D slices; the outputs of stages 0-2 (D, C_k, H/s, W/s), s = 2^(k+1), and the distilled
embedding (the encoder's neck, (D, embed_dim, H/16, W/16)) are stacked along z and
average-pooled by s along z, giving an isotropic 3D feature pyramid (C_k, D/s, H/s, W/s),
k = 0..3, whose coarsest level is the distilled embedding. Stage 1 distils that neck on exactly
these slices (working-grid axial slices, e.g. 64 x 64 for a 128^3 cube) against SAM's embedding
of the same slice, average-pooled to the neck's grid (:mod:`.distillation`): the 3D model
consumes the distilled embedding at the scale it was distilled for. No 3D convolution runs in
the encoder; the 3D decoders mix information across slices.

``top="stage"`` (the layout before issue 17, kept to read older bundles) uses stage 3's output
instead of the neck: the distilled embedding then never reaches the 3D model.

The slices are fed in SAM's input domain: intensities normalised to [0, 1] are scaled to
0..255, replicated to RGB and normalised with SAM's pixel mean and standard deviation, as
``Sam.preprocess`` does for the 2D path.
"""

from __future__ import annotations

import torch

from .lightweight_encoder import LightweightEncoder

#: SAM's pixel normalisation (RGB, 0..255 scale).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
#: Stride of the coarsest encoder stage; working volume sizes must be multiples of it.
COARSEST_STRIDE = 16
#: What the coarsest pyramid level is: the distilled embedding (neck) or stage 3's output.
PYRAMID_TOPS = ("neck", "stage")


def pyramid_channels(encoder_widths: tuple[int, ...], embed_dim: int, top: str = "neck") -> tuple[int, ...]:
    """Channels of the 4 pyramid levels (fine to coarse) for ``top`` in :data:`PYRAMID_TOPS`."""
    if top not in PYRAMID_TOPS:
        raise ValueError(f"pyramid top must be one of {PYRAMID_TOPS}, not {top!r}")
    return tuple(encoder_widths[:3]) + ((embed_dim,) if top == "neck" else (encoder_widths[3],))


def encode_slices(encoder: LightweightEncoder, slices: torch.Tensor, top: str = "neck") -> list[torch.Tensor]:
    """The 4 per-slice levels of ``slices`` (N, 1, H, W) in [0, 1]: stages 0-2 and the neck
    (``top="neck"``) or stage 3 (``"stage"``); shapes (N, C_k, H / 2^(k+1), W / 2^(k+1))."""
    stages = encoder.stages(sam_domain(slices))
    top_level = encoder.neck(stages[3]) if top == "neck" else stages[3]
    return [*stages[:3], top_level]


def sam_domain(slices: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) intensities in [0, 1] -> (N, 3, H, W) SAM-normalised RGB (float32)."""
    mean = torch.tensor(PIXEL_MEAN, device=slices.device, dtype=slices.dtype)[None, :, None, None]
    std = torch.tensor(PIXEL_STD, device=slices.device, dtype=slices.dtype)[None, :, None, None]
    return (slices * 255.0 - mean) / std


def volume_pyramid(encoder: LightweightEncoder, volume: torch.Tensor, top: str = "neck") -> list[torch.Tensor]:
    """The 3D feature pyramid of ``volume`` (B, 1, D, H, W) float32 in [0, 1], (z, y, x) order.

    Returns:
        4 tensors (B, C_k, D/s, H/s, W/s), s = 2^(k+1), k = 0..3, C_k from
        :func:`pyramid_channels`. D, H and W must be multiples of 16.
    """
    b, c, d, h, w = volume.shape
    if c != 1 or any(n % COARSEST_STRIDE for n in (d, h, w)):
        raise ValueError(
            f"volume must be (B, 1, D, H, W) with D, H, W multiples of {COARSEST_STRIDE}, not {tuple(volume.shape)}"
        )
    slices = volume.permute(0, 2, 1, 3, 4).reshape(b * d, 1, h, w)
    pyramid = []
    for k, features in enumerate(encode_slices(encoder, slices, top)):
        stride = 2 ** (k + 1)
        _, channels, fh, fw = features.shape
        # average of each run of `stride` consecutive slices (= avg_pool3d by (stride, 1, 1) along
        # z, 5x cheaper forward + backward: no permuted input)
        pooled = features.reshape(b, d // stride, stride, channels, fh, fw).mean(2).permute(0, 2, 1, 3, 4)
        pyramid.append(pooled.contiguous(memory_format=torch.channels_last_3d))
    return pyramid
