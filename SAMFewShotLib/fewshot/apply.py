"""Train a few-shot head from an annotation, and apply a head to a new volume.

``train_head`` loads the base SAM, encodes the annotated slices (through the embedding cache)
and fits the decoder (:mod:`.fit`). ``apply_head`` loads the base SAM, refuses it unless its
sha256 is the head's base model, and predicts every slice along the head's axis (or a range):
a voxel takes the label with the highest probability where that probability exceeds 0.5.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..annotation import SparseAnnotation
from ..errors import InputError
from ..memory import peak_rss_mib
from ..progress import CancelToken, Progress, no_progress
from ..volume import LabelVolume, Volume, label_dtype
from .fit import FitResult, fit_head
from .head import FewShotHead, check_base_model
from .predictor import SlicePredictor
from .training import TrainingConfig

#: Progress stage of loading the base model.
LOAD_STAGE = "fewshot: load model"


def load_base_model(
    checkpoint: str, *, model_type: str | None = None, device: str = "auto", progress: Progress = no_progress,
    cancel: CancelToken | None = None,
):
    """(SAM on the device in eval mode, its ``LoadedModel`` record) for a checkpoint path or name."""
    from ..sam.device import torch_device
    from ..sam.model_loading import load_sam

    target = torch_device(device)
    progress(LOAD_STAGE, 0, 1)
    sam, loaded = load_sam(checkpoint, model_type=model_type, cancel=cancel)
    progress(LOAD_STAGE, 1, 1)
    return sam.to(target).eval(), loaded


def train_head(
    image: Volume,
    annotation: SparseAnnotation,
    *,
    checkpoint: str,
    model_type: str | None = None,
    device: str = "auto",
    window: str = "auto",
    labels: Sequence[int] | None = None,
    cache=None,
    config: TrainingConfig | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> FitResult:
    """A head trained on ``annotation`` of ``image`` (see :func:`.fit.fit_head`).

    ``window``: "auto" (CT soft-tissue preset when the volume looks like CT, else percentiles),
    "percentile" or a CT preset name. ``labels``: values to train (default all drawn labels).
    ``cache``: the embedding cache (None: the default one, memory + disk under the SAMFewShot home).
    """
    from ..sam.embedding_cache import EmbeddingCache
    from ..sam.preprocess import Preprocessing

    image.require_same_grid(annotation.labels.volume, "annotation")
    sam, loaded = load_base_model(checkpoint, model_type=model_type, device=device, progress=progress, cancel=cancel)
    preprocessing = Preprocessing.for_volume(image, window=window)
    return fit_head(
        sam, loaded, image, annotation, preprocessing, labels=labels,
        cache=cache if cache is not None else EmbeddingCache(), config=config,
        progress=progress, cancel=cancel,
    )


@dataclass
class HeadPrediction:
    """The result of applying a head.

    Attributes:
        labels: the label map on the image grid with the head's segments.
        slices: the slices predicted (along ``axis``).
        axis: numpy axis of the slices.
        counters: encoder calls, cache hits, slices predicted, ...
        seconds: wall time per stage.
    """

    labels: LabelVolume
    slices: list[int]
    axis: int
    counters: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)


def run_head(
    head: FewShotHead,
    image: Volume,
    *,
    checkpoint: str,
    model_type: str | None = None,
    device: str = "auto",
    cache=None,
    slices: Sequence[int] | None = None,
    axis: int | None = None,
    batch_size: int | None = None,
    base=None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> HeadPrediction:
    """Apply ``head`` to ``image`` (see :func:`apply_head`) and keep the counters and timings."""
    from ..sam.embedding_cache import EmbeddingCache
    from ..sam.weights_store import resolve_checkpoint

    start = time.perf_counter()
    axis = head.axis if axis is None else axis
    if axis not in (0, 1, 2):
        raise ValueError(f"Axis must be 0, 1 or 2 (numpy z, y, x), not {axis!r}")
    n_slices = image.shape[axis]
    chosen = list(range(n_slices)) if slices is None else sorted({int(z) for z in slices})
    outside = [z for z in chosen if not 0 <= z < n_slices]
    if outside or not chosen:
        raise InputError(f"Slices to predict must lie in 0..{n_slices - 1} along axis {axis}, not {outside or 'none'}")
    if base is None:
        _, known_digest = resolve_checkpoint(checkpoint)
        if known_digest is not None:  # a registry or imported checkpoint: refuse before loading it
            check_base_model(head, known_digest, str(checkpoint))
        base = load_base_model(checkpoint, model_type=model_type, device=device, progress=progress, cancel=cancel)
    sam, loaded = base
    check_base_model(head, loaded.sha256, str(checkpoint))
    seconds = {"load model": time.perf_counter() - start}
    predictor = SlicePredictor(
        sam, loaded.sha256, head.build_decoder(sam), head.tokens(), image, axis, head.preprocessing_for(image),
        cache if cache is not None else EmbeddingCache(), decode_batch_size=batch_size,
    )
    values = np.asarray(head.label_values)
    canonical = np.zeros(np.moveaxis(image.array, axis, 0).shape, label_dtype(int(values.max())))
    for first in range(0, len(chosen), predictor.chunk):
        part = chosen[first : first + predictor.chunk]
        predicted = predictor.predict([(z, i) for z in part for i in range(len(values))], progress=progress, cancel=cancel)
        for z in part:
            stack = np.stack([predicted[(z, i)] for i in range(len(values))])
            best = stack.argmax(axis=0)
            canonical[z] = np.where(stack.max(axis=0) > 0.5, values[best], 0)
    labels = LabelVolume(image.with_array(np.ascontiguousarray(np.moveaxis(canonical, 0, axis))), head.segments)
    seconds.update(predictor.stats.seconds, total=time.perf_counter() - start)
    counters = dict(predictor.stats.counters(), model=loaded.name, model_type=loaded.model_type,
                    peak_rss_mib=peak_rss_mib())
    return HeadPrediction(labels, chosen, axis, counters, seconds)


def apply_head(
    head: FewShotHead,
    image: Volume,
    *,
    checkpoint: str,
    device: str = "auto",
    cache=None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
    slices: Sequence[int] | None = None,
    model_type: str | None = None,
    base=None,
) -> LabelVolume:
    """The head's labels on every slice of ``image`` along the head's axis (or ``slices``).

    Args:
        head: a trained head (:func:`~.head.load_head`).
        image: the volume, any grid; the result is on its grid, with the head's segments.
        checkpoint: the base SAM checkpoint (path or name); ValueError unless its sha256 is
            the head's base model.
        device: auto, cpu or cuda.
        cache: the embedding cache (None: the default one, memory + disk under the SAMFewShot home).
        slices: slice indices to predict (None: all); the others stay 0.
        model_type: architecture override for the loader.
        base: ``(sam, loaded)`` from :func:`load_base_model` for ``checkpoint``, to apply several
            heads or images without loading SAM each time (None: load it here).
    """
    return run_head(
        head, image, checkpoint=checkpoint, model_type=model_type, device=device, cache=cache, slices=slices,
        base=base, progress=progress, cancel=cancel,
    ).labels
