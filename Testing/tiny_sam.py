"""Tiny SAM models for tests, built from segment_anything's own classes with random weights.

Same structure as SAM (ViT image encoder with windowed and global attention and relative
positions, prompt encoder, two-way-transformer mask decoder, 1024-pixel input), narrow widths:
a forward pass on a 1024x1024 slice takes well under a second on the CPU.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer


def build_tiny_sam(
    seed: int = 0,
    embed_dim: int = 32,
    depth: int = 2,
    num_heads: int = 2,
    prompt_dim: int = 32,
    global_attn_indexes: tuple[int, ...] = (1,),
    window_size: int = 14,
) -> Sam:
    """A randomly initialised SAM of the official structure with narrow widths (eval mode)."""
    torch.manual_seed(seed)
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=depth,
            embed_dim=embed_dim,
            img_size=1024,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=num_heads,
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=global_attn_indexes,
            window_size=window_size,
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def save_tiny_checkpoint(path: Path, seed: int = 0, **kwargs) -> Path:
    """Save a tiny SAM's state dict the way official checkpoints are saved (torch.save of the
    state dict); returns the path."""
    torch.save(build_tiny_sam(seed, **kwargs).state_dict(), path)
    return Path(path)
