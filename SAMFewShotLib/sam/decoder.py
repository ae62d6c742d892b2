"""Batched mask decoding from cached image embeddings, equivalent to ``SamPredictor.predict``.

Prompts are given on the volume slice's pixel grid. Each prompt set goes the way
``SamPredictor.predict`` takes it: slice grid -> model grid (:class:`SliceGeometry`, only when
the slice was resampled to square pixels), ``ResizeLongestSide.apply_coords/apply_boxes``,
the prompt encoder, the mask decoder, ``Sam.postprocess_masks`` to the model grid, then back to
the slice grid (bilinear on logits) and the threshold ``sam.mask_threshold``.

Prompt sets of the same kind (same number of points, box or not, mask or not) are decoded in
one mask-decoder call even when they belong to different slices: the decoder's transformer
runs on a batch whose every element carries its own slice embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from segment_anything.modeling import MaskDecoder, Sam
from segment_anything.utils.transforms import ResizeLongestSide

from .decoder_transformer import is_official_transformer, two_way_transformer
from .embedding_cache import SliceEmbedding

#: Prompt sets per mask-decoder call by device type (None: 4). On a 2-core CPU with ViT-B the
#: decoder costs ~60-75 ms per prompt set in calls of 1-4 sets and ~95 ms in calls of 16 (the
#: transformer's activations leave the caches); a GPU gains from large batches. Memory: ~25 MB
#: per prompt set with 3 masks. Re-measured idle on a 2-core AVX-512 machine (session 7,
#: ``bench_decoder.py --threads 2 --repeat 3``, 16 slices per call): 33-37 ms per prompt set per
#: round in calls of 2, 40-43 in calls of 4, 56 in calls of 8, 40 in calls of 1: hence 2.
DEFAULT_MAX_BATCH = {"cpu": 2, "cuda": 32}


@dataclass(frozen=True, eq=False)
class Prompt:
    """One prompt set on the volume slice's pixel grid (all parts optional, as in SamPredictor).

    Attributes:
        points: (N, 2) float pixel coordinates (X, Y) = (col, row).
        labels: (N,) int, 1 foreground, 0 background.
        box: (4,) XYXY pixel coordinates (x0, y0, x1, y1).
        mask_input: (1, 256, 256) float low-res logits in SAM's input frame, e.g. a
            ``low_res_logits[b, c][None]`` of an earlier decode of the same slice; (256, 256) is
            accepted too.
    """

    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask_input: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.points is None) != (self.labels is None):
            raise ValueError("Points and labels must be given together")
        if self.points is not None:
            points = np.asarray(self.points, dtype=np.float64)
            if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
                raise ValueError(f"Points must be an (N, 2) array of (X, Y), N >= 1, not shape {points.shape}")
            labels = np.asarray(self.labels).reshape(-1)
            if labels.shape[0] != points.shape[0]:
                raise ValueError(f"{points.shape[0]} points but {labels.shape[0]} labels")
            object.__setattr__(self, "points", points)
            object.__setattr__(self, "labels", labels)
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float64)
            if box.size != 4:
                raise ValueError(f"A box must be 4 numbers XYXY, not shape {box.shape}")
            object.__setattr__(self, "box", box.reshape(4))
        if self.mask_input is not None:
            mask = np.asarray(self.mask_input, dtype=np.float32)
            if mask.ndim == 2:
                mask = mask[None]
            if mask.ndim != 3 or mask.shape[0] != 1:
                raise ValueError(
                    f"mask_input must be (1, 256, 256) low-res logits, not shape {np.shape(self.mask_input)}"
                )
            object.__setattr__(self, "mask_input", mask)

    @property
    def kind(self) -> tuple[int, bool, bool]:
        """(number of points, has box, has mask): prompt sets of one kind share a decoder call."""
        return (0 if self.points is None else len(self.points), self.box is not None, self.mask_input is not None)


@dataclass(frozen=True, eq=False)
class DecodedMasks:
    """Decoder output for B prompt sets on one slice (C = 3 with multimask output, else 1).

    Attributes:
        masks: (B, C, rows, cols) bool on the slice grid.
        logits: (B, C, rows, cols) float32 mask logits on the slice grid (None if not kept).
        iou_predictions: (B, C) float32, the model's mask-quality estimates.
        low_res_logits: (B, C, 256, 256) float32 in SAM's input frame (usable as mask_input).
    """

    masks: np.ndarray
    logits: np.ndarray | None
    iou_predictions: np.ndarray
    low_res_logits: np.ndarray


def decode(
    sam: Sam,
    embedding: SliceEmbedding,
    prompts: Prompt | Sequence[Prompt],
    *,
    multimask_output: bool = True,
    keep_logits: bool = True,
    max_batch: int | None = None,
    feedback_rounds: int = 0,
) -> DecodedMasks:
    """Masks of one slice for one or several prompt sets (see :func:`decode_slices`)."""
    return decode_slices(
        sam,
        [(embedding, prompts)],
        multimask_output=multimask_output,
        keep_logits=keep_logits,
        max_batch=max_batch,
        feedback_rounds=feedback_rounds,
    )[0]


def decode_slices(
    sam: Sam,
    requests: Sequence[tuple[SliceEmbedding, Prompt | Sequence[Prompt]]],
    *,
    multimask_output: bool = True,
    keep_logits: bool = True,
    max_batch: int | None = None,
    feedback_rounds: int = 0,
) -> list[DecodedMasks]:
    """Masks for several slices, each with one or several prompt sets, in batched decoder calls.

    Args:
        sam: the model the embeddings came from.
        requests: (slice embedding, prompt set or list of prompt sets) per slice.
        multimask_output: three masks per prompt set (True) or one (False), as SamPredictor.
        keep_logits: also return the slice-grid logits.
        max_batch: prompt sets per mask-decoder call (None: :data:`DEFAULT_MAX_BATCH` of the
            model's device).
        feedback_rounds: after the first decode, feed each prompt set's low-resolution logits
            back as its mask prompt this many times (SAM-MPA post-refinement; the same as
            calling again with ``mask_input=low_res_logits[b, 0]``), reusing the points' and
            box's embeddings; only the last round is brought to the slice grid. Needs
            ``multimask_output=False``.

    Returns:
        One :class:`DecodedMasks` per request, prompt sets in the order given, from the last round.
    """
    if max_batch is None:
        max_batch = DEFAULT_MAX_BATCH.get(sam.device.type, 4)
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, not {max_batch}")
    if feedback_rounds < 0:
        raise ValueError(f"feedback_rounds must be >= 0, not {feedback_rounds}")
    if feedback_rounds and multimask_output:
        raise ValueError("feedback_rounds needs multimask_output=False (one mask to feed back)")
    items: list[tuple[int, int, SliceEmbedding, Prompt]] = []  # (request index, prompt index, embedding, prompt)
    per_request: list[list[Prompt]] = []
    for r, (embedding, prompts) in enumerate(requests):
        prompts = [prompts] if isinstance(prompts, Prompt) else list(prompts)
        if not prompts:
            raise ValueError(f"Request {r} holds no prompt set")
        per_request.append(prompts)
        items.extend((r, p, embedding, prompt) for p, prompt in enumerate(prompts))

    outputs: dict[tuple[int, int], tuple] = {}
    with torch.inference_mode():
        image_pe = sam.prompt_encoder.get_dense_pe()  # (1, C, h, w): once per call, broadcast over the batch
        kinds = list(dict.fromkeys(item[3].kind for item in items))
        for kind in kinds:
            group = [item for item in items if item[3].kind == kind]
            for first in range(0, len(group), max_batch):
                chunk = group[first : first + max_batch]
                decoded = _decode_chunk(sam, chunk, image_pe, multimask_output, keep_logits, feedback_rounds)
                for (r, p, _, _), output in zip(chunk, decoded):
                    outputs[(r, p)] = output

    results = []
    for r, prompts in enumerate(per_request):
        parts = [outputs[(r, p)] for p in range(len(prompts))]
        results.append(
            DecodedMasks(
                masks=np.stack([part[0] for part in parts]),
                logits=np.stack([part[1] for part in parts]) if keep_logits else None,
                iou_predictions=np.stack([part[2] for part in parts]),
                low_res_logits=np.stack([part[3] for part in parts]),
            )
        )
    return results


def _given(arrays: list[np.ndarray | None]) -> list[np.ndarray]:
    """One prompt field across a chunk; a chunk holds prompt sets of one kind, so all are given."""
    given = [a for a in arrays if a is not None]
    assert len(given) == len(arrays), "a chunk mixes prompt kinds"
    return given


def _embed_prompts(sam: Sam, prompts: list[Prompt], embeddings: list[SliceEmbedding]) -> tuple[torch.Tensor, ...]:
    """Sparse (B, N, C) and dense (B, C, h, w) prompt embeddings of prompt sets of one kind."""
    device = sam.device
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    points = boxes = masks = None
    if prompts[0].points is not None:
        coords = np.stack(
            [
                transform.apply_coords(e.geometry.points_to_model(p), e.original_size)
                for e, p in zip(embeddings, _given([p.points for p in prompts]))
            ]
        )
        labels = np.stack(_given([p.labels for p in prompts]))
        points = (
            torch.as_tensor(coords, dtype=torch.float, device=device),
            torch.as_tensor(labels, dtype=torch.int, device=device),
        )
    if prompts[0].box is not None:
        box = np.concatenate(
            [
                transform.apply_boxes(e.geometry.boxes_to_model(b), e.original_size)
                for e, b in zip(embeddings, _given([p.box for p in prompts]))
            ]
        )
        boxes = torch.as_tensor(box, dtype=torch.float, device=device)
    if prompts[0].mask_input is not None:
        masks = torch.as_tensor(np.stack(_given([p.mask_input for p in prompts])), dtype=torch.float, device=device)
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
    if sparse.shape[0] != len(prompts):  # empty prompt sets: the prompt encoder makes one
        sparse = sparse.expand(len(prompts), -1, -1)
        dense = dense.expand(len(prompts), -1, -1, -1)
    return sparse, dense


def _decode_chunk(
    sam: Sam, chunk: list, image_pe: torch.Tensor, multimask_output: bool, keep_logits: bool, feedback_rounds: int
) -> list[tuple]:
    """Decode prompt sets of one kind (under inference mode); returns (masks, logits, iou, low-res) per item."""
    prompts: list[Prompt] = [item[3] for item in chunk]
    embeddings: list[SliceEmbedding] = [item[2] for item in chunk]
    mask_tokens = slice(1, None) if multimask_output else slice(0, 1)

    sparse, dense = _embed_prompts(sam, prompts, embeddings)
    image_embeddings = torch.stack([e.embedding for e in embeddings]).to(sam.device)
    low_res = iou = torch.empty(0)
    for round_index in range(feedback_rounds + 1):
        if round_index:  # the previous round's low-res logits as the mask prompt; points and box as they were
            dense = sam.prompt_encoder(points=None, boxes=None, masks=low_res)[1]
        if type(sam.mask_decoder) is MaskDecoder:
            low_res, iou = _predict_masks(sam.mask_decoder, image_embeddings, image_pe, sparse, dense, mask_tokens)
        else:  # a MaskDecoder subclass: its own predict_masks, one prompt set per call
            low_res, iou = _predict_masks_per_item(sam.mask_decoder, image_embeddings, image_pe, sparse, dense)
            low_res, iou = low_res[:, mask_tokens], iou[:, mask_tokens]

    results: list = [None] * len(chunk)
    shapes: dict[tuple[tuple[int, ...], ...], list[int]] = {}
    for i, e in enumerate(embeddings):
        shapes.setdefault((tuple(e.input_size), tuple(e.original_size), tuple(e.slice_shape)), []).append(i)
    low_res_numpy = low_res.float().cpu().numpy()
    iou_numpy = iou.float().cpu().numpy()
    for indices in shapes.values():
        geometry = embeddings[indices[0]].geometry
        upscaled = sam.postprocess_masks(low_res[indices], embeddings[indices[0]].input_size, geometry.model_shape)
        slice_logits = geometry.logits_to_slice(upscaled)
        binary = (slice_logits > sam.mask_threshold).cpu().numpy()
        logits = slice_logits.float().cpu().numpy() if keep_logits else None
        for j, i in enumerate(indices):
            results[i] = (binary[j], None if logits is None else logits[j], iou_numpy[i], low_res_numpy[i])
    return results


def _predict_masks(
    decoder: MaskDecoder,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse_prompt_embeddings: torch.Tensor,
    dense_prompt_embeddings: torch.Tensor,
    mask_tokens: slice = slice(None),
) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.predict_masks`` with one image embedding per prompt set.

    The official method repeats a single (1, C, h, w) image embedding (and its positional
    encoding) for every prompt set; here ``image_embeddings`` is (B, C, h, w), element b for
    prompt set b, and the (1, C, h, w) ``image_pe`` is broadcast, never copied. Only the mask
    tokens in ``mask_tokens`` are brought to masks. The output upscaling runs channels-last as
    matrix products (:func:`_upscaled_masks`), the same arithmetic as the official transposed
    convolutions up to float summation order. Returns (B, tokens, 4h, 4w) logits and
    (B, tokens) IoU predictions for the selected tokens.
    """
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

    pos = image_pe  # (1, C, h, w): broadcast by the transformer, never repeated per prompt set
    b, c, h, w = image_embeddings.shape
    selected = range(decoder.num_mask_tokens)[mask_tokens]

    if is_official_transformer(decoder.transformer):  # image-token attentions folded (decoder_transformer.py)
        # the sum formed channels last in one pass: (B, h*w, C)
        src = image_embeddings.new_empty(b, h, w, c)
        torch.add(image_embeddings.permute(0, 2, 3, 1), dense_prompt_embeddings.permute(0, 2, 3, 1), out=src)
        src = src.view(b, h * w, c)
        outputs = [0, *(1 + i for i in selected)]  # the IoU token and the selected mask tokens
        hs, src = two_way_transformer(decoder.transformer, src, pos, tokens, outputs)  # src: (B, h*w, C)
        iou_token_out, mask_tokens_out = hs[:, 0, :], hs[:, 1:, :]
    else:
        hs, src = decoder.transformer(image_embeddings + dense_prompt_embeddings, pos, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : (1 + decoder.num_mask_tokens), :][:, list(selected)]

    hyper_in = torch.stack(
        [decoder.output_hypernetworks_mlps[i](mask_tokens_out[:, j, :]) for j, i in enumerate(selected)], dim=1
    )
    masks = _upscaled_masks(decoder.output_upscaling, src.reshape(b, h, w, c), hyper_in)
    iou_pred = decoder.iou_prediction_head(iou_token_out)[:, mask_tokens]
    return masks, iou_pred


def _upscaled_masks(upscaling: torch.nn.Sequential, x: torch.Tensor, hyper_in: torch.Tensor) -> torch.Tensor:
    """``hyper_in @ output_upscaling(x)``: mask logits (B, T, 4H, 4W) from the transformer's
    channels-last (B, H, W, C) image tokens and the (B, T, C/8) hypernetwork outputs.

    Official layers: ConvTranspose2d(k=2, s=2), LayerNorm2d, activation, ConvTranspose2d(k=2,
    s=2), activation. A 2x2 stride-2 transposed convolution writes each input pixel's (2, 2,
    C_out) block independently, and every later layer works per pixel (LayerNorm2d normalises
    over channels, the activations are elementwise, the hypernetwork product sums over
    channels), so the chain runs as matrix products on pixel blocks in (H, W, kh1, kw1, kh2,
    kw2) order and only the T-channel masks are shuffled to (4H, 4W) at the end: the same
    arithmetic as the official modules up to float summation order. Any other layer structure
    runs as the official modules.
    """
    b, h, w, _ = x.shape
    if not _is_official_upscaling(upscaling):
        upscaled = upscaling(x.permute(0, 3, 1, 2))
        return (hyper_in @ upscaled.flatten(2)).view(b, -1, 4 * h, 4 * w)
    up1, up2 = cast(torch.nn.ConvTranspose2d, upscaling[0]), cast(torch.nn.ConvTranspose2d, upscaling[3])
    norm, act1, act2 = cast(Any, upscaling[1]), upscaling[2], upscaling[4]
    y = _conv_transpose_2x2_blocks(x.reshape(-1, x.shape[-1]), up1)  # (B*H*W*4, C/4)
    y = act1(torch.nn.functional.layer_norm(y, (y.shape[-1],), norm.weight, norm.bias, norm.eps))
    y = act2(_conv_transpose_2x2_blocks(y, up2))  # (B*H*W*16, C/8)
    blocks = hyper_in @ y.view(b, h * w * 16, -1).transpose(1, 2)  # (B, T, H*W*16), order (H, W, kh1, kw1, kh2, kw2)
    t = blocks.shape[1]
    blocks = blocks.view(b, t, h, w, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)  # (B, T, H, kh1, kh2, W, kw1, kw2)
    return blocks.reshape(b, t, 4 * h, 4 * w)


def _conv_transpose_2x2_blocks(x: torch.Tensor, conv: torch.nn.ConvTranspose2d) -> torch.Tensor:
    """A kernel-2, stride-2 ``ConvTranspose2d`` on pixels (N, C_in) -> their 2x2 output blocks
    (N * 4, C_out), rows ordered (pixel, kh, kw)."""
    c_in, c_out = conv.weight.shape[:2]
    weight = conv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out)  # (C_in, C_out, kh, kw) -> columns (kh, kw, o)
    y = x @ weight if conv.bias is None else torch.addmm(conv.bias.repeat(4), x, weight)
    return y.view(-1, c_out)


def _is_official_upscaling(upscaling: torch.nn.Module) -> bool:
    """True for segment_anything's output upscaling: the layers :func:`_upscaled_masks` rewrites."""
    from segment_anything.modeling.common import LayerNorm2d

    if not isinstance(upscaling, torch.nn.Sequential) or len(upscaling) != 5:
        return False
    up1, norm, _, up2, _ = upscaling
    return (
        all(_is_2x2_stride_2(up) for up in (up1, up2))
        and type(norm) is LayerNorm2d
        and all(isinstance(upscaling[i], (torch.nn.GELU, torch.nn.ReLU)) for i in (2, 4))
    )


def _is_2x2_stride_2(layer: torch.nn.Module) -> bool:
    return (
        type(layer) is torch.nn.ConvTranspose2d
        and tuple(layer.kernel_size) == (2, 2)
        and tuple(layer.stride) == (2, 2)
        and tuple(layer.padding) == (0, 0)
        and tuple(layer.output_padding) == (0, 0)
        and tuple(layer.dilation) == (1, 1)
        and layer.groups == 1
    )


def _predict_masks_per_item(
    decoder: MaskDecoder,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse_prompt_embeddings: torch.Tensor,
    dense_prompt_embeddings: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All mask tokens of each prompt set through ``decoder.predict_masks``, one at a time."""
    outputs = [
        decoder.predict_masks(
            image_embeddings=image_embeddings[b : b + 1],
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse_prompt_embeddings[b : b + 1],
            dense_prompt_embeddings=dense_prompt_embeddings[b : b + 1],
        )
        for b in range(image_embeddings.shape[0])
    ]
    return torch.cat([o[0] for o in outputs]), torch.cat([o[1] for o in outputs])
