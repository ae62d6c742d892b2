"""SSM-SAM's flexible mask attention decoder.

Four :class:`~SAMFewShotLib.meta.mask_attention_block.MaskAttentionBlock` sub-blocks, one per
stage embedding of the adapted encoder, let the query slice attend to a support slice weighted
by its Gaussian-blurred mask. Their outputs are fused into the query's image embedding with
learned per-stage weights (zero at the plain init), and a trainable copy of SAM's mask decoder
(two-way transformer, upscaling, hypernetwork) turns the fused embedding and the self-sampled
prompt tokens into mask logits (SAM's single-mask output).
"""

from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder
from torch import nn

from .mask_attention_block import MaskAttentionBlock
from .model import N_STAGES, EncoderFeatures


class FlexibleMaskAttentionDecoder(nn.Module):
    """Query and support features, support mask, prompt tokens -> (B, 1, 256, 256) logits.

    Args:
        stage_dim: C, channels of the stage embeddings.
        mask_decoder: a SAM ``MaskDecoder`` owned by this module (pass a copy); its IoU head and
            the hypernetworks of the multimask outputs are frozen (unused).
        heads: attention heads of the sub-blocks.
        key_pool: average pooling of the support keys/values.
    """

    def __init__(self, stage_dim: int, mask_decoder: MaskDecoder, heads: int, key_pool: int) -> None:
        super().__init__()
        dim = mask_decoder.transformer_dim
        self.blocks = nn.ModuleList(MaskAttentionBlock(stage_dim, dim, heads, key_pool) for _ in range(N_STAGES))
        self.fusion = nn.Parameter(torch.zeros(N_STAGES))
        self.mask_decoder = mask_decoder
        mask_decoder.requires_grad_(True)
        mask_decoder.iou_prediction_head.requires_grad_(False)
        for mlp in mask_decoder.output_hypernetworks_mlps[1:]:
            mlp.requires_grad_(False)

    def forward(
        self,
        query: EncoderFeatures,
        support: EncoderFeatures,
        weights: torch.Tensor,
        tokens: torch.Tensor,
        image_pe: torch.Tensor,
        dense: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            query: the query slice's features (batch 1).
            support: the support slice's features (batch 1).
            weights: (1, 1, h, w) blurred support mask on the embedding grid, in [0, 1].
            tokens: (1, N, D) prompt tokens.
            image_pe: (1, D, h, w) dense positional encoding.
            dense: (1, D, h, w) dense prompt embedding (SAM's "no mask" embedding).

        Returns:
            (1, 1, 4h, 4w) float low-resolution mask logits in SAM's input frame.
        """
        fused = query.image_embedding
        for j, block in enumerate(self.blocks):
            fused = fused + self.fusion[j] * block(query.stages[j], support.stages[j], weights, image_pe)
        masks, _ = self.mask_decoder.predict_masks(fused, image_pe, tokens, dense)
        return masks[:, :1]
