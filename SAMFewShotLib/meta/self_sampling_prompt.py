"""SSM-SAM's self-sampling prompt module: prompt tokens made from the image itself.

Points are sampled from a prior mask (the nearest annotated slice's mask, or the previous
slice's prediction, see :func:`~SAMFewShotLib.meta.slices.prompt_points`). Each point token is
SAM's own point embedding (positional encoding + foreground/background embedding) plus the
query image embedding interpolated at the point (bilinear, a learned projection). Learnable
global query tokens join them; the tokens attend to each other (self-attention), then to the
image embedding with its positional encoding (cross-attention), then an MLP; every step is a
pre-norm residual branch.

At the plain init the projection and every branch's output layer are zero and the global
queries are copies (with 0.02 noise) of SAM's "not a point" padding token, so the tokens start
as exactly the point prompts SAM would get.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.common import MLPBlock
from torch import nn
from torch.nn import functional as F

from .attention import FusedAttention


class SelfSamplingPrompt(nn.Module):
    """Point tokens + global queries -> prompt tokens for the mask decoder.

    Args:
        dim: D, the prompt width (SAM's 256).
        global_queries: G, the number of learnable global queries.
        heads: attention heads (must divide D // 2).
        padding_token: (1, D) SAM's ``not_a_point_embed`` weight, the global queries' start.
    """

    def __init__(self, dim: int, global_queries: int, heads: int, padding_token: torch.Tensor) -> None:
        super().__init__()
        self.point_features = nn.Linear(dim, dim)
        nn.init.zeros_(self.point_features.weight)
        nn.init.zeros_(self.point_features.bias)
        start = padding_token.detach().reshape(1, dim).float().cpu().repeat(global_queries, 1)
        self.global_queries = nn.Parameter(start + 0.02 * torch.randn(global_queries, dim))
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = FusedAttention(dim, heads).zero_output()
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attn = FusedAttention(dim, heads, downsample_rate=2).zero_output()
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, 2 * dim)
        nn.init.zeros_(self.mlp.lin2.weight)
        nn.init.zeros_(self.mlp.lin2.bias)

    def forward(
        self,
        point_tokens: torch.Tensor,
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        image_size: int,
    ) -> torch.Tensor:
        """Prompt tokens.

        Args:
            point_tokens: (B, N, D) SAM's sparse point embeddings (N may be 0).
            coords: (B, N, 2) float (X, Y) pixel coordinates in SAM's ``image_size`` input
                frame, or None when N = 0.
            labels: (B, N) int, 1 foreground, 0 background, -1 padding (no feature sampled).
            image_embedding: (B, D, h, w) the query slice's image embedding.
            image_pe: (1, D, h, w) SAM's dense positional encoding.
            image_size: SAM's input size (1024).

        Returns:
            (B, N + G, D) float tokens.
        """
        batch = image_embedding.shape[0]
        tokens = point_tokens
        if coords is not None and coords.shape[1] > 0:
            assert labels is not None  # point prompts come as (coords, labels) pairs
            grid = (coords + 0.5) / image_size * 2.0 - 1.0  # grid_sample's (x, y) in [-1, 1]
            sampled = F.grid_sample(image_embedding, grid[:, :, None, :], align_corners=False)[..., 0]
            sampled = sampled.transpose(1, 2) * (labels >= 0)[..., None].to(sampled.dtype)
            tokens = tokens + self.point_features(sampled)
        tokens = torch.cat([tokens, self.global_queries[None].expand(batch, -1, -1)], dim=1)
        normed = self.norm_self(tokens)
        tokens = tokens + self.self_attn(normed, normed, normed)
        keys = image_embedding.flatten(2).transpose(1, 2)
        positions = image_pe.flatten(2).transpose(1, 2)
        tokens = tokens + self.cross_attn(self.norm_cross(tokens), keys + positions, keys)
        return tokens + self.mlp(self.norm_mlp(tokens))
