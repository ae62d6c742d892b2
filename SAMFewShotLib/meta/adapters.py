"""Adapters for every block of the frozen SAM ViT (SSM-SAM's encoder tuning).

As in explicit visual prompting, every block gets its own prompt computed from the frozen patch
embedding ``e`` (patch embedding + absolute positions, (B, 64, 64, C)):

    p_i = up(GELU(tune_i(down(e))))

``down`` (C -> r) and ``up`` (r -> C) are shared by all blocks, ``tune_i`` (r -> r) is the
per-block tune MLP. ``p_i`` is added to the input of block ``i``. ``up`` starts at zero, so
the adapted encoder starts as exactly SAM's encoder.
"""

from __future__ import annotations

import torch
from torch import nn


class BlockAdapters(nn.Module):
    """Per-block prompts for a ViT of ``depth`` blocks and width ``embed_dim``.

    Args:
        embed_dim: C, the ViT width.
        depth: number of blocks.
        rank: r, the bottleneck width.
    """

    def __init__(self, embed_dim: int, depth: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(embed_dim, rank)
        self.tune = nn.ModuleList(nn.Linear(rank, rank) for _ in range(depth))
        self.act = nn.GELU()
        self.up = nn.Linear(rank, embed_dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def bottleneck(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) frozen patch embedding -> (B, H, W, r), shared by every block's prompt."""
        return self.down(patches)

    def forward(self, bottleneck: torch.Tensor, block: int) -> torch.Tensor:
        """Prompt of block ``block``: (B, H, W, r) bottleneck -> (B, H, W, C), added to its input."""
        return self.up(self.act(self.tune[block](bottleneck)))
