"""One sub-block of the flexible mask attention decoder: query pixels attend to a support slice.

For stage ``j`` the query and support stage embeddings are projected to the prompt width D
(1x1 convolution + LayerNorm2d, shared by query and support). The support side is average-pooled
(``key_pool``) to keys and values, each weighted by the Gaussian-blurred support mask ``w``:

    keys   = S + PE + w * e_key          (the mask tells every key whether it lies on the target)
    values = (S + e_value) * w           (only target pixels contribute content)

Every query pixel (with its positional encoding) attends to them, so it gathers the target
evidence of the support pixels that look (and lie) like it. The result ``A`` gates the query
features through a multiply-and-norm residual, ``LN(Q + Q * A)``, then an MLP (add and norm).
"""

from __future__ import annotations

import torch
from segment_anything.modeling.common import LayerNorm2d, MLPBlock
from torch import nn
from torch.nn import functional as F

from .attention import FusedAttention


class MaskAttentionBlock(nn.Module):
    """Query stage embedding x support stage embedding x support mask -> (B, D, h, w).

    Args:
        stage_dim: C, channels of the stage embeddings (the ViT width).
        dim: D, the prompt width.
        heads: attention heads (must divide D // 2).
        key_pool: average-pooling factor of the support keys/values.
    """

    def __init__(self, stage_dim: int, dim: int, heads: int, key_pool: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(stage_dim, dim, kernel_size=1, bias=False), LayerNorm2d(dim))
        self.mask_key = nn.Parameter(0.02 * torch.randn(dim))
        self.mask_value = nn.Parameter(torch.zeros(dim))
        self.attn = FusedAttention(dim, heads, downsample_rate=2)
        self.norm = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, 2 * dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.key_pool = key_pool

    def forward(
        self, query: torch.Tensor, support: torch.Tensor, weights: torch.Tensor, image_pe: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            query: (B, C, h, w) query stage embedding.
            support: (B, C, h, w) support stage embedding.
            weights: (B, 1, h, w) blurred support mask in [0, 1] on the embedding grid.
            image_pe: (1, D, h, w) SAM's dense positional encoding.

        Returns:
            (B, D, h, w) float: the query features after attending to the support.
        """
        b, _, h, w = query.shape
        q = self.project(query)
        s = F.avg_pool2d(self.project(support), self.key_pool)
        key_weights = F.avg_pool2d(weights, self.key_pool)
        key_pe = F.avg_pool2d(image_pe, self.key_pool)

        def tokens(x: torch.Tensor) -> torch.Tensor:  # (B, D, h, w) -> (B, h*w, D)
            return x.flatten(2).transpose(1, 2)

        s, key_weights, key_pe = tokens(s), tokens(key_weights), tokens(key_pe)
        keys = s + key_pe + key_weights * self.mask_key
        values = (s + self.mask_value) * key_weights
        q_tokens = tokens(q)
        attended = self.attn(q_tokens + tokens(image_pe), keys, values)
        x = self.norm(q_tokens + q_tokens * attended)
        x = self.norm_mlp(x + self.mlp(x))
        return x.transpose(1, 2).reshape(b, -1, h, w)
