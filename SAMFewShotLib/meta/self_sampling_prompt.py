"""SSM-SAM's self-sampling prompt encoder (Leng et al., Sec. 3.2, "Self-sampling prompt encoder").

SAM's prompt encoder embeds a point as its positional encoding plus a foreground/background
embedding. SSM-SAM replaces that: points are *sampled* from a prior mask (positive points inside
it, negative points around it, :func:`sample_points`), and each point token is the query image's
own embedding bilinearly interpolated at the point (plus a learned positive/negative type
embedding). Learnable global queries join the point tokens; all tokens attend to each other
(self-attention), then to the image embedding (cross-attention), then pass an MLP; each step is
a pre-norm residual branch. No positional encoding is used anywhere (the paper's Table 3
contrasts exactly this with SAM's positional encoding).

The output tokens condition the flexible mask attention decoder: the first global query is the
mask token of its hypernetwork (see :mod:`~SAMFewShotLib.meta.mask_attention_decoder`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from segment_anything.modeling.common import MLPBlock
from torch import nn
from torch.nn import functional as F

from .attention import FusedAttention


def sample_points(
    prior: np.ndarray, positive: int, negative: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Self-sampled prompt points of a prior mask, on the slice grid.

    ``positive`` points are drawn uniformly (with replacement when the mask is small) from the
    mask's pixels; ``negative`` points from the band around it: pixels outside the mask within
    its bounding box grown by half its size on every side (anywhere outside the mask when that
    band is empty). An empty prior gives only negative points, drawn from the whole slice.

    Args:
        prior: (rows, cols) bool prior mask.
        positive, negative: how many points of each kind.
        rng: the sampler.

    Returns:
        ((N, 2) float64 (row, col) pixel coordinates, (N,) int64 labels: 1 positive, 0 negative).
    """
    prior = np.asarray(prior, bool)
    inside = np.argwhere(prior)
    if inside.size:
        lo, hi = inside.min(0), inside.max(0) + 1
        grow = np.maximum((hi - lo) // 2, 2)
        box = np.zeros_like(prior)
        box[max(0, lo[0] - grow[0]) : hi[0] + grow[0], max(0, lo[1] - grow[1]) : hi[1] + grow[1]] = True
        band = box & ~ndimage.binary_dilation(prior)
        outside = np.argwhere(band) if band.any() else np.argwhere(~prior)
    else:
        outside = np.argwhere(~prior)
    chosen, labels = [], []
    for pool, count, label in ((inside, positive if inside.size else 0, 1), (outside, negative, 0)):
        if count == 0 or pool.size == 0:
            continue
        picks = rng.choice(len(pool), size=count, replace=len(pool) < count)
        chosen.append(pool[picks].astype(np.float64))
        labels.extend([label] * count)
    if not chosen:
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    return np.concatenate(chosen), np.asarray(labels, np.int64)


class SelfSamplingPromptEncoder(nn.Module):
    """Point features + global queries -> prompt tokens.

    Args:
        dim: D, the image embedding's channels (SAM's neck width, 256 for ViT-B).
        global_queries: G, learnable global query tokens.
        heads: attention heads (must divide D // 2).
    """

    def __init__(self, dim: int, global_queries: int, heads: int) -> None:
        super().__init__()
        self.point_features = nn.Linear(dim, dim)
        self.point_type = nn.Embedding(2, dim)  # 0 negative, 1 positive
        self.global_queries = nn.Parameter(torch.randn(global_queries, dim))
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = FusedAttention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attn = FusedAttention(dim, heads, downsample_rate=2)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, 2 * dim)

    def forward(self, grid_points: torch.Tensor, labels: torch.Tensor, image_embedding: torch.Tensor) -> torch.Tensor:
        """Prompt tokens of one or more query slices.

        Args:
            grid_points: (B, N, 2) float (x, y) point positions in grid_sample's [-1, 1] frame of
                ``image_embedding`` (N may be 0).
            labels: (B, N) int64, 1 positive, 0 negative.
            image_embedding: (B, D, h, w) the query slice's image embedding.

        Returns:
            (B, G + N, D) float tokens, the G global queries first.
        """
        batch = image_embedding.shape[0]
        tokens = self.global_queries[None].expand(batch, -1, -1)
        if grid_points.shape[1] > 0:
            sampled = F.grid_sample(image_embedding, grid_points[:, :, None, :], align_corners=False)[..., 0]
            points = self.point_features(sampled.transpose(1, 2)) + self.point_type(labels)
            tokens = torch.cat([tokens, points], dim=1)
        normed = self.norm_self(tokens)
        tokens = tokens + self.self_attn(normed, normed, normed)
        keys = image_embedding.flatten(2).transpose(1, 2)
        tokens = tokens + self.cross_attn(self.norm_cross(tokens), keys, keys)
        return tokens + self.mlp(self.norm_mlp(tokens))
