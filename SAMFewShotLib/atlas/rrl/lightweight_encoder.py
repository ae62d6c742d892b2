"""The lightweight image encoder shared by RRL-MedSAM's general and medical branches.

A small convolutional network (inverted-residual blocks, GroupNorm, GELU) with four stages at
strides 2, 4, 8 and 16 and a SAM-style neck. Given SAM's encoder input (B, 3, 1024, 1024) --
a slice preprocessed and normalised exactly as ``SamPredictor`` does -- :meth:`forward` returns a
SAM-compatible image embedding (B, embed_dim, 64, 64) (embed_dim = 256 for SAM ViT-B), the
target of stage-1 distillation. :meth:`stages` returns the four stage outputs, which the 3D
branch stacks slice by slice into feature volumes (see :mod:`.volume_features`).

With the default widths (24, 48, 96, 192) and embed_dim 256 the encoder has about 1.5 M
parameters, 1.7 % of SAM ViT-B's 89.7 M image-encoder parameters (``benchmarks/bench_rrl.py``
prints the exact count). The paper's encoder is "3 %" of SAM-B; its exact layout is not given,
so this one is our own design within the issue's 5 % bound.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

#: SAM ViT-B image-encoder parameter count (sam_vit_b_01ec64.pth), for the size ratio.
VIT_B_ENCODER_PARAMETERS = 89_670_912


def _groups(channels: int) -> int:
    """GroupNorm groups: 8 channels per group where possible."""
    for groups in (channels // 8, 4, 2, 1):
        if groups >= 1 and channels % groups == 0:
            return groups
    return 1


class _ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.GroupNorm(_groups(cout), cout),
        ]
        if act:
            layers.append(nn.GELU())
        super().__init__(*layers)


class _InvertedResidual(nn.Module):
    """x + project(depthwise3x3(expand(x))), MobileNetV2 style with GroupNorm."""

    def __init__(self, channels: int, expansion: int = 2):
        super().__init__()
        hidden = channels * expansion
        self.body = nn.Sequential(
            _ConvNormAct(channels, hidden, 1),
            _ConvNormAct(hidden, hidden, 3, groups=hidden),
            _ConvNormAct(hidden, channels, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _LayerNorm2d(nn.Module):
    """LayerNorm over channels of a (B, C, H, W) tensor (SAM's neck uses the same)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class LightweightEncoder(nn.Module):
    """A SAM-compatible lightweight image encoder.

    Args:
        embed_dim: channels of the image embedding (SAM: 256; the tiny test SAM: 32).
        widths: channels of the four stages (strides 2, 4, 8, 16).
        depths: inverted-residual blocks per stage.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        widths: Sequence[int] = (24, 48, 96, 192),
        depths: Sequence[int] = (0, 2, 2, 4),
    ):
        super().__init__()
        if len(widths) != 4 or len(depths) != 4:
            raise ValueError(f"widths and depths must have 4 entries, not {tuple(widths)} and {tuple(depths)}")
        self.embed_dim = int(embed_dim)
        self.widths = tuple(int(w) for w in widths)
        stages = []
        cin = 3
        for width, depth in zip(self.widths, depths):
            stages.append(nn.Sequential(_ConvNormAct(cin, width, 3, 2), *[_InvertedResidual(width) for _ in range(depth)]))
            cin = width
        self.stages_ = nn.ModuleList(stages)
        self.neck = nn.Sequential(
            nn.Conv2d(cin, embed_dim, 1, bias=False),
            _LayerNorm2d(embed_dim),
            nn.Conv2d(embed_dim, embed_dim, 3, padding=1, bias=False),
            _LayerNorm2d(embed_dim),
        )

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs of ``x`` (B, 3, H, W) float32 (SAM-normalised RGB): shapes
        (B, widths[k], H / 2^(k+1), W / 2^(k+1)) for k = 0..3 (sizes rounded up)."""
        out = []
        for stage in self.stages_:
            x = stage(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The image embedding of ``x`` (B, 3, 1024, 1024) SAM encoder input: (B, embed_dim, 64, 64)."""
        return self.neck(self.stages(x)[-1])


def parameter_count(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())
