"""The frozen SAM ViT with adapters in every block, exposing its four stage embeddings.

SAM's ViT-B/L/H encoders interleave windowed-attention blocks with four global-attention
blocks; the output of each global block closes a stage (blocks 2, 5, 8, 11 of ViT-B). The
mask attention decoder uses these four stage embeddings (C channels, 64x64), the mask decoder
the final image embedding (SAM's neck, 256 channels, 64x64).

Only the adapters train. The ViT's weights are frozen; the patch embedding (before any block)
does not depend on the adapters and is computed once per slice (:meth:`AdaptedViT.embed_patches`),
then reused for every online step. With gradients on, each block is recomputed in the backward
pass (gradient checkpointing): only the block inputs (C x 64 x 64 floats each) stay in memory,
not the attention maps (805 MB per global block of ViT-B).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from segment_anything.modeling import ImageEncoderViT
from torch import nn
from torch.utils.checkpoint import checkpoint

from .adapters import BlockAdapters

#: Number of stage embeddings the decoder fuses.
N_STAGES = 4


@dataclass
class EncoderFeatures:
    """One slice's adapted encoder output.

    Attributes:
        stages: N_STAGES tensors (B, C, 64, 64), the outputs of the stage-closing blocks.
        image_embedding: (B, D, 64, 64), SAM's neck applied to the last block's output.
    """

    stages: list[torch.Tensor]
    image_embedding: torch.Tensor


def stage_blocks(encoder: ImageEncoderViT) -> list[int]:
    """Indices of the N_STAGES blocks whose outputs are the stage embeddings.

    The global-attention blocks (``window_size == 0``) when there are N_STAGES of them (every
    official SAM ViT); otherwise the blocks that end N_STAGES equal shares of the depth.
    """
    depth = len(encoder.blocks)
    global_blocks = [i for i, block in enumerate(encoder.blocks) if block.window_size == 0]
    if len(global_blocks) == N_STAGES:
        return global_blocks
    return [max(0, round((i + 1) * depth / N_STAGES) - 1) for i in range(N_STAGES)]


class AdaptedViT(nn.Module):
    """SAM's image encoder (frozen) with :class:`BlockAdapters` (trainable).

    Args:
        encoder: a segment_anything ``ImageEncoderViT``; its parameters are set to
            ``requires_grad=False`` (the caller's model is frozen in place).
        rank: the adapters' bottleneck width.
        checkpointing: recompute blocks in the backward pass (see the module docstring).
    """

    def __init__(self, encoder: nn.Module, rank: int, checkpointing: bool = True) -> None:
        super().__init__()
        if not isinstance(encoder, ImageEncoderViT):
            raise ValueError(
                "The meta engine needs a ViT image encoder (SAM / MedSAM vit_b, vit_l, vit_h), "
                f"not {type(encoder).__name__} (MobileSAM's TinyViT has no ViT blocks to adapt)"
            )
        encoder.requires_grad_(False)
        self.encoder = encoder
        self.adapters = BlockAdapters(encoder.patch_embed.proj.out_channels, len(encoder.blocks), rank)
        self.stage_blocks = stage_blocks(encoder)
        self.checkpointing = checkpointing

    @property
    def width(self) -> int:
        """C, the ViT width (channels of the stage embeddings)."""
        return int(self.encoder.patch_embed.proj.out_channels)

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 1024, 1024) normalised, padded SAM input -> (B, 64, 64, C) patch embedding with
        absolute positions (frozen: computed without gradients)."""
        with torch.no_grad():
            patches = self.encoder.patch_embed(images)
            if self.encoder.pos_embed is not None:
                patches = patches + self.encoder.pos_embed
        return patches

    def forward(self, patches: torch.Tensor) -> EncoderFeatures:
        """(B, 64, 64, C) patch embedding -> :class:`EncoderFeatures` of the adapted encoder."""
        bottleneck = self.adapters.bottleneck(patches)
        recompute = self.checkpointing and torch.is_grad_enabled()
        x = patches
        stages = []
        for index, block in enumerate(self.encoder.blocks):
            x = x + self.adapters(bottleneck, index)
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
            if index in self.stage_blocks:
                stages.extend([x.permute(0, 3, 1, 2)] * self.stage_blocks.count(index))
        return EncoderFeatures(stages=stages, image_embedding=self.encoder.neck(x.permute(0, 3, 1, 2)))
