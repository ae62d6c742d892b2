"""SAM's global ViT attention one query row at a time: the same numbers, a fraction of the memory.

SAM's ViT image encoder (segment_anything ``ImageEncoderViT``: ViT-B/L/H) attends globally in 4
of its blocks (ViT-B: 2, 5, 8, 11) over all 64 x 64 = 4096 patch tokens of a 1024 x 1024 input,
with MViTv2's decomposed relative positions (Li et al., CVPR 2022, Eq. 4; SAM's appendix A):

    attention(i, j) = softmax_j( q_i . k_j * scale + q_i . R_h[h_i - h_j] + q_i . R_w[w_i - w_j] )

The reference ``Attention.forward`` forms that score tensor whole, (B x heads, 4096, 4096):
805 MB in fp32 for ViT-B, written, biased, soft-maxed into a second one and read again, so a
global block costs about 3x what its arithmetic needs on a CPU (measured: 1.3 s against 0.36 s
for a windowed block of the same matrix sizes). :func:`row_chunked_forward` computes the same
sums for one row of the token grid at a time (64 queries x 4096 keys per head: a few MB that
stay in cache): ``q k^T`` by a batched matrix product, the two relative-position terms added in
place as broadcast views (out of place while exporting to ONNX, whose TorchScript exporter
loses in-place writes into views), the softmax and ``A v``; the bands are concatenated at the end. The
arithmetic and its order per score are the reference's, so results agree to float rounding
(about 1e-7 of the output; ``Testing/sam/test_vit_attention.py``).

Only inference takes this path (no gradient recorded: encoding slices); with gradients
(the meta engine adapts the ViT) the reference forward runs, so training is unchanged.
Windowed blocks (14 x 14 tokens per window) are left to the reference: their scores are small.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn

__all__ = ["SCORE_ELEMENTS_PER_CHUNK", "RowChunkedAttention", "install_row_chunked_attention", "row_chunked_forward"]

#: Scores formed at once (elements, fp32): 4 M = 16 MB, i.e. one 64-token row of ViT-B's grid
#: for its 12 heads (12 x 64 x 4096 = 3.1 M); smaller grids take several rows per chunk.
SCORE_ELEMENTS_PER_CHUNK = 4_000_000


def row_chunked_forward(module: Attention, x: torch.Tensor) -> torch.Tensor:
    """segment_anything ``Attention.forward`` of ``module`` computed one band of token rows at a time.

    Args:
        module: a segment_anything ``image_encoder.Attention`` (``qkv``, ``proj``, ``num_heads``,
            ``scale``, ``use_rel_pos``, ``rel_pos_h`` / ``rel_pos_w``).
        x: (B, H, W, C) tokens, channels last, as the reference takes them.

    Returns:
        (B, H, W, C), the reference's output (to float rounding).
    """
    batch, height, width, _ = x.shape
    heads = module.num_heads
    tokens = height * width
    # (3, B * heads, tokens, head_dim), the reference's layout
    q, k, v = (
        module.qkv(x).reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4).reshape(3, batch * heads, tokens, -1)
    ).unbind(0)
    head_dim = q.shape[-1]
    keys_t = k.transpose(1, 2)
    if module.use_rel_pos:
        rel_h_table = get_rel_pos(height, height, module.rel_pos_h)  # (H query rows, H key rows, head_dim)
        rel_w_table = get_rel_pos(width, width, module.rel_pos_w)  # (W, W, head_dim)
    rows = max(1, SCORE_ELEMENTS_PER_CHUNK // (batch * heads * width * tokens))
    bands = []
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        band = q[:, top * width : bottom * width]  # (B * heads, band tokens, head_dim)
        scores = torch.bmm(band * module.scale, keys_t)  # (B * heads, band tokens, tokens)
        if module.use_rel_pos:
            grid_q = band.reshape(batch * heads, bottom - top, width, head_dim)
            rel_h = torch.einsum("bhwc,hkc->bhwk", grid_q, rel_h_table[top:bottom])  # (., rows, W, H keys)
            rel_w = torch.einsum("bhwc,wkc->bhwk", grid_q, rel_w_table)  # (., rows, W, W keys)
            grid = scores.view(batch * heads, bottom - top, width, height, width)
            if torch.onnx.is_in_onnx_export():  # the TorchScript exporter loses in-place writes into a view
                scores = (grid + rel_h[..., :, None] + rel_w[..., None, :]).view_as(scores)
            else:
                grid.add_(rel_h[..., :, None]).add_(rel_w[..., None, :])  # in place: into scores
        bands.append(torch.bmm(scores.softmax(dim=-1), v))
    out = torch.cat(bands, dim=1) if len(bands) > 1 else bands[0]
    out = out.view(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
    return module.proj(out)


class RowChunkedAttention(Attention):
    """segment_anything's ``Attention`` (same parameters and state dict) whose forward, when no
    gradient is recorded, is :func:`row_chunked_forward`; with gradients, the reference's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)  # training: the reference, with its autograd graph
        return row_chunked_forward(self, x)


def install_row_chunked_attention(image_encoder: nn.Module) -> int:
    """Make the global-attention blocks of a segment_anything ``ImageEncoderViT`` run
    :func:`row_chunked_forward` when no gradient is recorded. Other encoders (TinyViT,
    EfficientViT) and windowed blocks are left alone. Returns how many blocks were changed."""
    blocks = getattr(image_encoder, "blocks", None)
    if blocks is None or not hasattr(image_encoder, "patch_embed"):
        return 0
    changed = 0
    for block in blocks:
        attention = getattr(block, "attn", None)
        if getattr(block, "window_size", None) == 0 and type(attention) is Attention:
            attention.__class__ = RowChunkedAttention  # same module, parameters and state dict
            changed += 1
    return changed
