"""SSM-SAM's flexible mask attention decoder (FMAD, Leng et al., Sec. 3.3), which replaces SAM's
prompt encoder and mask decoder.

Four :class:`~SAMFewShotLib.meta.mask_attention_block.FlexibleMaskAttention` blocks, one per
stage embedding of the adapted encoder, let the query slice attend to the support slice with
the support mask as values (Eq. 7-10). The fusion upsamples their four outputs to the
low-resolution mask grid (4x the embedding grid, as SAM's), concatenates them and convolves
(3x3 conv, LayerNorm, GELU, 3x3 conv). The mask logits are the fused features' dot product with
a hypernetwork of the first prompt token (the self-sampling prompt encoder's first global
query), as SAM's mask token: the self-sampled prompt decides which fused features mean "target".
"""

from __future__ import annotations

import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import nn
from torch.nn import functional as F

from .mask_attention_block import FlexibleMaskAttention
from .model import N_STAGES, EncoderFeatures

#: The low-resolution mask grid is this many times the embedding grid (SAM's 256 for 64).
UPSCALE = 4


class FlexibleMaskAttentionDecoder(nn.Module):
    """Query and support features, support mask, prompt tokens -> (B, 1, 4h, 4w) logits.

    Args:
        stage_dim: C, channels of the stage embeddings.
        token_dim: D, the prompt tokens' width.
        dim: d, channels of the mask attention outputs and of the fusion.
        heads: attention heads of the mask attention blocks.
        temperature: tau of Eq. 8.
        key_pool: average pooling of the support keys and mask.
        prior_channel: also concatenate the prior mask (on the low-resolution grid) into the
            fusion's input (a deviation from the paper, ``MetaConfig.prior_in_fusion``).
        norm_eps: epsilon of the mask attention's instance norm.
    """

    def __init__(
        self, stage_dim: int, token_dim: int, dim: int, heads: int, temperature: float, key_pool: int,
        prior_channel: bool = False, norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            FlexibleMaskAttention(stage_dim, dim, heads, temperature, key_pool, norm_eps) for _ in range(N_STAGES)
        )
        self.fusion = nn.Sequential(
            nn.Conv2d(N_STAGES * dim + int(prior_channel), dim, kernel_size=3, padding=1),
            LayerNorm2d(dim),
            nn.GELU(),
            nn.Conv2d(dim, dim, kernel_size=3, padding=1),
        )
        self.hypernetwork = nn.Sequential(nn.Linear(token_dim, token_dim), nn.GELU(), nn.Linear(token_dim, dim))

    def forward(
        self, query: EncoderFeatures, support: EncoderFeatures, mask: torch.Tensor, tokens: torch.Tensor,
        prior: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            query: the query slice's features (batch B).
            support: the support slice's features (batch B).
            mask: (B, 1, h, w) support mask on the embedding grid, in [0, 1].
            tokens: (B, N, D) prompt tokens (the first one is the mask token).
            prior: (B, 1, 4h, 4w) prior mask on the low-resolution grid, only with ``prior_channel``.

        Returns:
            (B, 1, 4h, 4w) float low-resolution mask logits in SAM's input frame.
        """
        outputs = [block(q, s, mask) for block, q, s in zip(self.blocks, query.stages, support.stages)]
        upsampled = [F.interpolate(o, scale_factor=UPSCALE, mode="bilinear", align_corners=False) for o in outputs]
        if prior is not None:
            upsampled.append(prior)
        fused = self.fusion(torch.cat(upsampled, dim=1))
        weights = self.hypernetwork(tokens[:, 0])
        return torch.einsum("bchw,bc->bhw", fused, weights)[:, None]
