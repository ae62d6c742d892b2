"""SAM-MPA refinement of a coarse mask: per slice and per connected component of the coarse
mask, the auto-prompts of :mod:`.prompts` (foreground point,
bounding-box-corner background points, box, sigmoid-softened mask) are decoded, SAM's own
low-resolution logits are fed back as the mask prompt ``refine`` times, and the components'
logits are unioned (maximum).

Used by the ``sam`` engine (coarse mask from ``register`` / ``interpolate``) and by the atlas's
SAM refinement (coarse mask from the atlas registration).
"""

from __future__ import annotations

import numpy as np

from ..progress import CancelToken, Progress, no_progress


def refine_slice(sam, embedding, coarse: np.ndarray, refine: int, decoder_calls: list[int] | None = None):
    """SAM-MPA refinement of one slice's coarse mask.

    Args:
        sam: the SAM model.
        embedding: the slice's :class:`~SAMFewShotLib.sam.embedding_cache.SliceEmbedding`.
        coarse: (rows, cols) bool coarse mask on the slice grid.
        refine: post-refinement rounds (SAM's low-resolution logits fed back as mask prompt).
        decoder_calls: a one-element counter incremented per decoder call (optional).

    Returns:
        ((rows, cols) float32 union (max) of SAM's logits over the coarse mask's components, mean
        predicted IoU), or (None, 0.0) when the slice has no promptable component.
    """
    from .decoder import Prompt, decode
    from .prompts import component_prompts, mask_prompt, soft_logits

    components = component_prompts(coarse)
    if not components:
        return None, 0.0
    geometry = embedding.geometry
    prompts = []
    for component in components:
        model_logits = geometry.image_to_model(soft_logits(component.component), linear=True)
        prompts.append(
            Prompt(
                points=component.points,
                labels=component.labels,
                box=component.box,
                mask_input=mask_prompt(model_logits, embedding.input_size).numpy(),
            )
        )
    decoded = decode(sam, embedding, prompts, multimask_output=False)
    calls = 1
    for _ in range(refine):
        prompts = [
            Prompt(points=p.points, labels=p.labels, box=p.box, mask_input=decoded.low_res_logits[i, 0][None])
            for i, p in enumerate(prompts)
        ]
        decoded = decode(sam, embedding, prompts, multimask_output=False)
        calls += 1
    if decoder_calls is not None:
        decoder_calls[0] += calls
    assert decoded.logits is not None  # decode keeps the logits by default
    union = decoded.logits[:, 0].max(axis=0).astype(np.float32)
    return union, float(decoded.iou_predictions[:, 0].mean())


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
) -> tuple[np.ndarray, dict[int, float]]:
    """SAM refinement of one label's coarse mask on the given slices (see :func:`refine_slice`).

    Args:
        sam: the SAM model.
        encoded: slice index -> embedding (``encoded[z]``), e.g. :func:`~SAMFewShotLib.sam.encoder.encode_slices`'s
            result, along the slicing axis.
        coarse: (n_slices, rows, cols) bool coarse mask, slicing axis first.
        slices: the slice indices to refine (each must be in ``encoded``).
        refine: post-refinement rounds.
        decoder_calls: one-element decoder call counter (optional).
        progress: ``(stage, slices done, len(slices))`` after each slice.
        cancel: polled before each slice.

    Returns:
        (probability, quality): (n_slices, rows, cols) float32 sigmoid of SAM's logits on the
        refined slices (0 elsewhere, and on slices without a promptable component), and
        {slice: mean predicted IoU} for the slices SAM refined.
    """
    probability = np.zeros(coarse.shape, np.float32)
    quality: dict[int, float] = {}
    slices = list(slices)
    for i, z in enumerate(slices):
        if cancel is not None:
            cancel.raise_if_cancelled()
        logits, predicted_iou = refine_slice(sam, encoded[z], coarse[z], refine, decoder_calls)
        if logits is not None:
            probability[z] = 1.0 / (1.0 + np.exp(-logits))
            quality[z] = predicted_iou
        progress(stage, i + 1, len(slices))
    return probability, quality
