"""SAM refinement of an atlas result, slice by slice, with prompts from the atlas labels.

The atlas result (registered or network labels) plays the part of the sam engine's coarse
mask: on every axial slice a label covers, SAM-MPA's auto-prompts (foreground point, box
corners as background points, box, softened mask) are made per connected component and
decoded, with ``refine`` post-refinement rounds. This is the sam engine's own per-slice
refinement (:func:`SAMFewShotLib.sam.refinement.refine_label`); only the slices the atlas labels
cover are encoded, through the embedding cache. A voxel takes the label of highest SAM
probability above 0.5; a slice where a label has no promptable component keeps the atlas mask.
"""

from __future__ import annotations

import numpy as np

from ..progress import CancelToken, Progress, no_progress
from ..volume import LabelVolume, Volume, label_dtype

#: Progress stage of the decoding.
STAGE = "sam refinement"


def refine_with_sam(
    image: Volume,
    labels: LabelVolume,
    checkpoint: str,
    *,
    device: str = "auto",
    refine: int = 1,
    model_type: str | None = None,
    window: str = "auto",
    cache=None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> tuple[LabelVolume, dict]:
    """Refine every label of ``labels`` with SAM on the axial slices it covers.

    Args:
        image: (z, y, x) target image.
        labels: (z, y, x) label map on the image grid (the atlas result).
        checkpoint: SAM checkpoint path or name.
        device: "auto", "cpu" or "cuda".
        refine: post-refinement rounds (>= 0).
        model_type: architecture override for the loader.
        window: SAM intensity window ("auto", or a CT preset name).
        cache: embedding cache (default: memory + disk under the SAMFewShot home).

    Returns:
        (refined labels on the image grid with ``labels``'s segment table, counters:
        encoder_calls, slices_encoded, cache_hits, decoder_calls, model, axis).
    """
    from ..annotation import axis_from_name
    from ..sam.device import torch_device
    from ..sam.refinement import refine_label
    from ..sam.embedding_cache import EmbeddingCache
    from ..sam.encoder import encode_slices
    from ..sam.model_loading import load_sam
    from ..sam.preprocess import Preprocessing

    image.require_same_grid(labels.volume, "atlas result")
    if refine < 0:
        raise ValueError(f"SAM refinement rounds must be 0 or more, not {refine}")
    target_device = torch_device(device)
    axis = axis_from_name("axial", image.direction)
    coarse = np.moveaxis(labels.array, axis, 0)
    values = labels.label_values()
    slices = {v: [int(z) for z in np.flatnonzero((coarse == v).any(axis=(1, 2)))] for v in values}
    sam, loaded = load_sam(checkpoint, model_type=model_type, progress=progress, cancel=cancel)
    sam = sam.to(target_device)
    encoded = encode_slices(
        sam, loaded.sha256, image, axis, sorted({z for zs in slices.values() for z in zs}),
        Preprocessing.for_volume(image, window=window), cache if cache is not None else EmbeddingCache(),
        progress=progress, cancel=cancel,
    )
    decoder_calls = [0]
    best = np.full(coarse.shape, 0.5, np.float32)
    fused = np.zeros(coarse.shape, label_dtype(max(values, default=1)))
    for value in values:
        mask = coarse == value
        probability, quality = refine_label(
            sam, encoded, mask, slices[value], refine=refine, decoder_calls=decoder_calls,
            progress=progress, stage=f"{STAGE}: label {value}", cancel=cancel,
        )
        for z in set(slices[value]) - set(quality):  # nothing SAM could prompt: keep the atlas
            probability[z] = mask[z]
        wins = probability > best
        fused[wins] = value
        best[wins] = probability[wins]
    counters = {
        "encoder_calls": encoded.stats.encoder_calls,
        "slices_encoded": encoded.stats.slices_encoded,
        "cache_hits": encoded.stats.cache_hits,
        "decoder_calls": decoder_calls[0],
        "model": loaded.name,
        "axis": axis,
    }
    return labels.with_array(np.ascontiguousarray(np.moveaxis(fused, 0, axis))), counters
