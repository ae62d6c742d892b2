"""SAM's two-way transformer (the mask decoder's) with its image-token attentions folded into
per-prompt-set matrices: the same function as ``segment_anything``'s ``TwoWayTransformer``, in
about three quarters of the arithmetic and without the per-head reshapes of the 4096 image
tokens.

The image side of the decoder has 4096 tokens (64 x 64), the prompt side a dozen (IoU and mask
tokens, points, box corners). Official SAM projects the 4096 image tokens to the attention width
(q/k/v projections, 128 wide) and back (output projection) in every cross attention, then splits
them into heads (copies). Since a projection is linear, each cross attention can instead fold
its image-side projections into the few prompt tokens:

- token -> image (prompt tokens query the image): per head ``softmax(q_h Wk_h (x + pe)^T)``;
  ``q_h Wk_h`` is a (heads x tokens, C) matrix, so the scores are one (heads x tokens) x C x 4096
  product; the key bias adds a constant per row (softmax ignores it); the values' projection
  commutes with the attention average (``P (x Wv_h^T + bv_h) = (P x) Wv_h^T + bv_h``: rows of
  P sum to 1), so ``P x`` is the second 4096-long product.
- image -> token (image tokens query the prompt tokens): the query projection folds into the
  keys (``(x Wq_h^T + bq_h) k_h^T = x (k_h Wq_h)^T + bq_h k_h^T``) and the output projection
  into the values (``Wo_h v_h``), so both image-side products are 4096 x C x (heads x tokens).

With 8 heads and 12 prompt tokens that is 2 x 4096 x 256 x 96 multiply-adds per cross attention
instead of 2 x 4096 x 256 x 128 (plus the head splits), and ``x + pe`` is formed once per layer
(the official blocks form it twice). The prompt-side work (self attention, MLP, norms) runs
through the official modules. The results equal the official transformer's up to float
summation order (``Testing/sam/test_sam_decoder_parity.py``: SamPredictor parity < 1e-4).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def is_official_transformer(transformer: Any) -> bool:
    """Whether ``transformer`` is segment_anything's ``TwoWayTransformer`` made of its own blocks
    and attentions (the structure :func:`two_way_transformer` reproduces)."""
    from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer

    if type(transformer) is not TwoWayTransformer or type(transformer.final_attn_token_to_image) is not Attention:
        return False
    for layer in transformer.layers:
        if type(layer) is not TwoWayAttentionBlock:
            return False
        if any(type(a) is not Attention for a in (layer.cross_attn_token_to_image, layer.cross_attn_image_to_token)):
            return False
    return True


def two_way_transformer(
    transformer: Any, src: Tensor, pos: Tensor, tokens: Tensor, outputs: list[int] | None = None
) -> tuple[Tensor, Tensor]:
    """``transformer(src, pos, tokens)`` for an official ``TwoWayTransformer`` (see the module doc).

    Args:
        src: (B, C, h, w) image embeddings plus dense prompt embeddings, or the same channels
            last, (B, h*w, C).
        pos: (1 or B, C, h, w) image positional encoding.
        tokens: (B, N, C) output tokens and sparse prompt embeddings.
        outputs: the tokens whose outputs the caller reads (None: all). The final token-to-image
            attention, which only changes the tokens' outputs, then runs for these alone (the
            IoU token and the selected mask tokens: 2 of about 12 with one mask).

    Returns:
        (queries (B, N, C), keys (B, h*w, C) channels last), as the official forward; with
        ``outputs``, queries (B, len(outputs), C) of those tokens, in that order.
    """
    keys = src if src.dim() == 3 else src.flatten(2).transpose(1, 2).contiguous()  # (B, n, C)
    key_pe = pos.flatten(2).transpose(1, 2).contiguous()  # (1, n, C)
    query_pe = tokens
    queries = tokens
    for layer in transformer.layers:
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        keys_pe = keys + key_pe
        queries = queries + _token_to_image(layer.cross_attn_token_to_image, queries + query_pe, keys_pe, keys)
        queries = layer.norm2(queries)
        queries = layer.norm3(queries + layer.mlp(queries))
        keys = keys + _image_to_token(layer.cross_attn_image_to_token, keys_pe, queries + query_pe, queries)
        keys = layer.norm4(keys)
    if outputs is not None:
        queries, query_pe = queries[:, outputs], query_pe[:, outputs]
    attention = transformer.final_attn_token_to_image
    queries = queries + _token_to_image(attention, queries + query_pe, keys + key_pe, keys)
    return transformer.norm_final_attn(queries), keys


def _heads(attention: Any) -> tuple[int, int]:
    heads = int(attention.num_heads)
    return heads, int(attention.internal_dim) // heads


def _token_to_image(attention: Any, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``attention(q=q, k=k, v=v)`` with few queries (B, m, C) and many keys/values (B, n, C)."""
    heads, d = _heads(attention)
    b, m, _ = q.shape
    c = k.shape[-1]
    qh = attention.q_proj(q).view(b, m, heads, d)
    wk = attention.k_proj.weight.view(heads, d, c)
    folded = torch.einsum("bthd,hdc->bhtc", qh, wk).reshape(b, heads * m, c) * (1.0 / math.sqrt(d))
    probabilities = torch.softmax(torch.bmm(folded, k.transpose(1, 2)), dim=-1)  # (B, H*m, n); k's bias: a row constant
    averaged = torch.bmm(probabilities, v).view(b, heads, m, c)  # rows of P sum to 1: project after averaging
    wv = attention.v_proj.weight.view(heads, d, c)
    out = torch.einsum("bhtc,hdc->bthd", averaged, wv).reshape(b, m, heads * d) + attention.v_proj.bias
    return attention.out_proj(out)


def _image_to_token(attention: Any, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``attention(q=q, k=k, v=v)`` with many queries (B, n, C) and few keys/values (B, m, C)."""
    heads, d = _heads(attention)
    b, m, c = k.shape
    n = q.shape[1]
    scale = 1.0 / math.sqrt(d)
    kh = attention.k_proj(k).view(b, m, heads, d)
    wq = attention.q_proj.weight.view(heads, d, c)
    folded_keys = torch.einsum("bthd,hdc->bhtc", kh, wq).reshape(b, heads * m, c) * scale
    bias = torch.einsum("bthd,hd->bht", kh, attention.q_proj.bias.view(heads, d)).reshape(b, 1, heads * m) * scale
    scores = torch.baddbmm(bias, q, folded_keys.transpose(1, 2))  # (B, n, H*m)
    probabilities = torch.softmax(scores.view(b, n, heads, m), dim=-1).view(b, n, heads * m)
    vh = attention.v_proj(v).view(b, m, heads, d)
    wo = attention.out_proj.weight.view(c, heads, d)
    folded_values = torch.einsum("bthd,chd->bhtc", vh, wo).reshape(b, heads * m, c)
    return torch.baddbmm(attention.out_proj.bias.view(1, 1, c), probabilities, folded_values)
