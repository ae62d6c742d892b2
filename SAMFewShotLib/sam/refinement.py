"""SAM-MPA refinement of a coarse mask: per slice and per connected component of the coarse
mask, the auto-prompts of :mod:`.prompts` (foreground point,
bounding-box-corner background points, box, sigmoid-softened mask) are decoded, SAM's own
low-resolution logits are fed back as the mask prompt ``refine`` times, and the components'
logits are unioned (maximum).

Decoding is batched: the prompt sets of several slices (:data:`SLICES_PER_CALL`) go through one
:func:`~.decoder.decode_slices` call, the refinement rounds reuse the points' and box's
embeddings and only the last round is brought to the slice grid.

Used by the ``sam`` engine (coarse mask from ``register`` / ``interpolate``) and by the atlas's
SAM refinement (coarse mask from the atlas registration).
"""

from __future__ import annotations

import numpy as np

from ..progress import CancelToken, Progress, no_progress

#: Slices whose prompt sets share one :func:`~.decoder.decode_slices` call (progress and cancel
#: between calls); the decoder itself splits them into batches of ``DEFAULT_MAX_BATCH`` prompt sets.
SLICES_PER_CALL = 16


def slice_prompts(embedding, coarse: np.ndarray) -> list:
    """SAM-MPA prompt sets (:class:`~.decoder.Prompt`) of one slice's coarse mask, one per component.

    Args:
        embedding: the slice's :class:`~SAMFewShotLib.sam.embedding_cache.SliceEmbedding` (its geometry).
        coarse: (rows, cols) bool coarse mask on the slice grid.

    Returns:
        Prompt sets (points, labels, box, soft-mask prompt), largest component first; empty when
        the slice has no promptable component.
    """
    from .decoder import Prompt
    from .prompts import component_prompts, mask_prompt, soft_logits

    geometry = embedding.geometry
    prompts = []
    for component in component_prompts(coarse):
        model_logits = geometry.image_to_model(soft_logits(component.component), linear=True)
        prompts.append(
            Prompt(
                points=component.points,
                labels=component.labels,
                box=component.box,
                mask_input=mask_prompt(model_logits, embedding.input_size).numpy(),
            )
        )
    return prompts


def refine_slices(
    sam, requests: list, refine: int, decoder_calls: list[int] | None = None
) -> list[tuple[np.ndarray | None, float]]:
    """SAM-MPA refinement of several slices' coarse masks in one batched decode.

    Args:
        sam: the SAM model.
        requests: (embedding, (rows, cols) bool coarse mask) per slice.
        refine: post-refinement rounds (SAM's low-resolution logits fed back as mask prompt).
        decoder_calls: a one-element counter incremented by the decoder rounds run (1 + refine
            per call that decodes anything).

    Returns:
        Per request: ((rows, cols) float32 union (max) of SAM's logits over the coarse mask's
        components, mean predicted IoU), or (None, 0.0) when the slice has no promptable component.
    """
    from .decoder import decode_slices

    prompted = [(embedding, slice_prompts(embedding, coarse)) for embedding, coarse in requests]
    todo = [i for i, (_, prompts) in enumerate(prompted) if prompts]
    results: list[tuple[np.ndarray | None, float]] = [(None, 0.0)] * len(requests)
    if not todo:
        return results
    decoded = decode_slices(sam, [prompted[i] for i in todo], multimask_output=False, feedback_rounds=refine)
    if decoder_calls is not None:
        decoder_calls[0] += 1 + refine
    for i, masks in zip(todo, decoded):
        assert masks.logits is not None  # decode keeps the logits by default
        union = masks.logits[:, 0].max(axis=0).astype(np.float32)
        results[i] = (union, float(masks.iou_predictions[:, 0].mean()))
    return results


def refine_slice(sam, embedding, coarse: np.ndarray, refine: int, decoder_calls: list[int] | None = None):
    """SAM-MPA refinement of one slice's coarse mask (see :func:`refine_slices`).

    Returns:
        ((rows, cols) float32 union (max) of SAM's logits over the coarse mask's components, mean
        predicted IoU), or (None, 0.0) when the slice has no promptable component.
    """
    return refine_slices(sam, [(embedding, coarse)], refine, decoder_calls)[0]


def refine_label(
    sam,
    encoded,
    coarse: np.ndarray,
    slices,
    *,
    refine: int,
    decoder_calls: list[int] | None = None,
    progress: Progress = no_progress,
    stage: str = "sam",
    cancel: CancelToken | None = None,
    slices_per_call: int = SLICES_PER_CALL,
) -> tuple[np.ndarray, dict[int, float]]:
    """SAM refinement of one label's coarse mask on the given slices (see :func:`refine_slices`).

    Args:
        sam: the SAM model.
        encoded: slice index -> embedding (``encoded[z]``), e.g. :func:`~SAMFewShotLib.sam.encoder.encode_slices`'s
            result, along the slicing axis.
        coarse: (n_slices, rows, cols) bool coarse mask, slicing axis first.
        slices: the slice indices to refine (each must be in ``encoded``).
        refine: post-refinement rounds.
        decoder_calls: one-element decoder round counter (optional).
        progress: ``(stage, slices done, len(slices))`` after each batched call.
        cancel: polled before each batched call.
        slices_per_call: slices decoded together.

    Returns:
        (probability, quality): (n_slices, rows, cols) float32 sigmoid of SAM's logits on the
        refined slices (0 elsewhere, and on slices without a promptable component), and
        {slice: mean predicted IoU} for the slices SAM refined.
    """
    if slices_per_call < 1:
        raise ValueError(f"slices_per_call must be >= 1, not {slices_per_call}")
    probability = np.zeros(coarse.shape, np.float32)
    quality: dict[int, float] = {}
    slices = list(slices)
    for first in range(0, len(slices), slices_per_call):
        if cancel is not None:
            cancel.raise_if_cancelled()
        chunk = slices[first : first + slices_per_call]
        refined = refine_slices(sam, [(encoded[z], coarse[z]) for z in chunk], refine, decoder_calls)
        for z, (logits, predicted_iou) in zip(chunk, refined):
            if logits is not None:
                probability[z] = 1.0 / (1.0 + np.exp(-logits))
                quality[z] = predicted_iou
        progress(stage, first + len(chunk), len(slices))
    return probability, quality
