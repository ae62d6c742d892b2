"""Batched prediction of the few-shot decoder: label probabilities on volume slices.

Requests (slice, label) are grouped by label (one set of prompt tokens) and decoded in batches
of ``batch_size`` slices, under ``torch.inference_mode``. The low-resolution fg - bg logit
difference goes back to the slice's grid the way ``SamPredictor`` masks do
(``Sam.postprocess_masks`` to the model grid, then bilinear to the slice grid); since both
steps are linear, its sigmoid equals the two-channel softmax at full resolution.

Joint decoders (``joint=True``) decode every label of a slice in one pass (Xie et al.): the
requests are grouped by slice instead, and only the requested labels are returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..progress import CancelToken, Progress, no_progress
from ..sam.decoder import DEFAULT_MAX_BATCH
from ..sam.embedding_cache import SliceEmbedding
from .decoder import FewShotMaskDecoder

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

#: Progress stage of prediction.
STAGE = "fewshot: predict"


def predict_slices(
    sam: Sam,
    decoder: FewShotMaskDecoder,
    tokens: Sequence[torch.Tensor],
    embeddings: Mapping[int, SliceEmbedding],
    requests: Sequence[tuple[int, int]],
    *,
    batch_size: int | None = None,
    joint: bool = False,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> dict[tuple[int, int], np.ndarray]:
    """Probabilities of labels on slices.

    Args:
        sam: the base model (for ``postprocess_masks``).
        decoder: the trained decoder (any device).
        tokens: per label index, (K, C) float32 prompt tokens (its target embeddings).
        embeddings: {slice index: embedding} holding every requested slice.
        requests: (slice index, label index) pairs.
        batch_size: slices per decoder call (None: 4 on the CPU, 32 on CUDA).
        joint: decode all labels of a slice in one pass (``decoder.forward_joint``).
        progress: called ``(STAGE, requests done, requests)`` after every batch.
        cancel: polled before every batch.

    Returns:
        {(slice, label index): (rows, cols) float32 probability in [0, 1] on the slice grid}.
    """
    device = decoder.output_tokens.device
    if batch_size is None:
        batch_size = DEFAULT_MAX_BATCH.get(device.type, 4)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    if joint:
        return _predict_joint(sam, decoder, tokens, embeddings, requests, batch_size, progress, cancel)
    by_label: dict[int, list[int]] = {}
    for z, label_index in dict.fromkeys(requests):
        by_label.setdefault(label_index, []).append(z)
    total, done = sum(len(v) for v in by_label.values()), 0
    out: dict[tuple[int, int], np.ndarray] = {}
    progress(STAGE, 0, total)
    decoder.eval()
    for label_index, slices in by_label.items():
        label_tokens = tokens[label_index].to(device)
        for first in range(0, len(slices), batch_size):
            if cancel is not None:
                cancel.raise_if_cancelled()
            batch = slices[first : first + batch_size]
            with torch.inference_mode():
                stacked = torch.stack([embeddings[z].embedding for z in batch]).to(device)
                logits = decoder(stacked, label_tokens, label_index)
                difference = (logits[:, 0] - logits[:, 1]).unsqueeze(1)
                for i, z in enumerate(batch):
                    out[(z, label_index)] = _to_slice(sam, difference[i : i + 1], embeddings[z])
            done += len(batch)
            progress(STAGE, done, total)
    return out


def _predict_joint(
    sam: Sam,
    decoder: FewShotMaskDecoder,
    tokens: Sequence[torch.Tensor],
    embeddings: Mapping[int, SliceEmbedding],
    requests: Sequence[tuple[int, int]],
    batch_size: int,
    progress: Progress,
    cancel: CancelToken | None,
) -> dict[tuple[int, int], np.ndarray]:
    """:func:`predict_slices` for a joint decoder: batches of slices, all labels per pass."""
    device = decoder.output_tokens.device
    by_slice: dict[int, list[int]] = {}
    for z, label_index in dict.fromkeys(requests):
        by_slice.setdefault(z, []).append(label_index)
    slices, total, done = list(by_slice), len(dict.fromkeys(requests)), 0
    all_tokens = [t.to(device) for t in tokens]
    out: dict[tuple[int, int], np.ndarray] = {}
    progress(STAGE, 0, total)
    decoder.eval()
    for first in range(0, len(slices), batch_size):
        if cancel is not None:
            cancel.raise_if_cancelled()
        batch = slices[first : first + batch_size]
        with torch.inference_mode():
            stacked = torch.stack([embeddings[z].embedding for z in batch]).to(device)
            logits = decoder.forward_joint(stacked, all_tokens)
            difference = logits[:, :, 0] - logits[:, :, 1]
            for i, z in enumerate(batch):
                for label_index in by_slice[z]:
                    logit = difference[i : i + 1, label_index : label_index + 1]
                    out[(z, label_index)] = _to_slice(sam, logit, embeddings[z])
                    done += 1
        progress(STAGE, done, total)
    return out


def _to_slice(sam: Sam, difference: torch.Tensor, embedding: SliceEmbedding) -> np.ndarray:
    """(1, 1, 4h, 4w) low-resolution logit difference -> (rows, cols) float32 probability."""
    model = sam.postprocess_masks(difference, tuple(embedding.input_size), tuple(embedding.original_size))
    logits = embedding.geometry.logits_to_slice(model)
    return torch.sigmoid(logits[0, 0]).float().cpu().numpy()
