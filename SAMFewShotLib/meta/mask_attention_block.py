"""Flexible mask attention (SSM-SAM, Leng et al., Sec. 3.3, Eq. 7-10), one per stage embedding.

For stage ``j`` the query and support stage embeddings (C channels) are projected to d channels
by a shared 1x1 convolution: F (query) and F_s (support). With the support mask M' on the
same grid (the fraction of each cell it covers, average-pooled with the keys by ``key_pool``):

    Q = F W^Q,  K = F_s W^K,  V = M' W^V                                   (Eq. 7)
    A = softmax(Q_hat K_hat^T / tau),   Q_hat, K_hat l2-normalised per head    (Eq. 8)
    O = InsNorm((A V) ⊙ F)                                                   (Eq. 9-10)

V is the mask itself (one channel lifted to d by W^V): every query pixel gathers how much of the
target lies under the support pixels whose features match its own, and that evidence gates the
query features channel by channel before an instance norm. F enters the product through a
learned per-channel affine map (scale 1, shift 1 at the start), so that at the start O carries
the mask evidence A V itself, modulated by the features, rather than a zero-mean product.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class FlexibleMaskAttention(nn.Module):
    """Query stage embedding x support stage embedding x support mask -> (B, d, h, w).

    Args:
        stage_dim: C, channels of the stage embeddings (the ViT width).
        dim: d, the output channels.
        heads: attention heads (must divide ``dim``).
        temperature: tau of Eq. 8.
        key_pool: average-pooling factor of the support keys and mask (1: every grid cell).
        norm_eps: epsilon of the instance norm (see ``MetaConfig.norm_eps``).
    """

    def __init__(
        self, stage_dim: int, dim: int, heads: int, temperature: float, key_pool: int, norm_eps: float = 1e-5
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide the decoder width ({dim})")
        self.project = nn.Conv2d(stage_dim, dim, kernel_size=1)
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(1, dim, bias=False)
        self.gate_scale = nn.Parameter(torch.ones(dim, 1, 1))
        self.gate_shift = nn.Parameter(torch.ones(dim, 1, 1))
        self.norm = nn.InstanceNorm2d(dim, affine=True, eps=norm_eps)
        self.heads, self.temperature, self.key_pool = heads, float(temperature), key_pool

    def forward(self, query: torch.Tensor, support: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            query: (B, C, h, w) query stage embedding.
            support: (B, C, h, w) support stage embedding.
            mask: (B, 1, h, w) float in [0, 1], M': the support mask on the embedding grid.


        Returns:
            (B, d, h, w) float, O of Eq. 10.
        """
        b, _, h, w = query.shape
        features = self.project(query)
        support_features = F.avg_pool2d(self.project(support), self.key_pool)
        pooled_mask = F.avg_pool2d(mask, self.key_pool)

        def heads(x: torch.Tensor) -> torch.Tensor:  # (B, N, d) -> (B, heads, N, d / heads)
            return x.reshape(b, x.shape[1], self.heads, -1).transpose(1, 2)

        q = F.normalize(heads(self.w_q(features.flatten(2).transpose(1, 2))), dim=-1)
        k = F.normalize(heads(self.w_k(support_features.flatten(2).transpose(1, 2))), dim=-1)
        v = heads(self.w_v(pooled_mask.flatten(2).transpose(1, 2)))
        attended = F.scaled_dot_product_attention(q, k, v, scale=1.0 / self.temperature)
        attended = attended.transpose(1, 2).reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return self.norm(attended * (self.gate_scale * features + self.gate_shift))
