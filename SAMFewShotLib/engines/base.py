"""The engine contract.

Every engine turns an image and a :class:`~SAMFewShotLib.annotation.SparseAnnotation` into a
:class:`Prediction` on the image grid. Engines work one label at a time in a canonical
orientation: the annotated axis is numpy axis 0 (``annotation.to_canonical`` does the transposes),
and return a :class:`LabelProbability` per label. :func:`combine_labels` then resolves overlaps
by confidence (the label with the highest probability wins) and writes the annotated slices back
exactly as drawn. Engines never write files and never touch Slicer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import numpy as np

from ..annotation import SparseAnnotation
from ..prediction import LabelProbability, Prediction  # re-exported: the engine contract names them
from ..progress import CancelToken, Progress, no_progress
from ..volume import LabelVolume, Volume, label_dtype


class Engine(Protocol):
    name: str

    def propagate(
        self,
        image: Volume,
        annotation: SparseAnnotation,
        *,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> Prediction: ...


class Timer:
    """Accumulates wall seconds per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def check_same_grid(image: Volume, annotation: SparseAnnotation) -> None:
    """ValueError naming both grids unless the annotation lies on the image's grid."""
    image.require_same_grid(annotation.labels.volume, "annotation")


def combine_labels(
    annotation: SparseAnnotation, per_label: dict[int, LabelProbability]
) -> tuple[LabelVolume, dict[int, np.ndarray]]:
    """Fuse per-label probabilities into one label map on the image grid.

    A voxel takes the label with the highest probability when that probability exceeds 0.5;
    every annotated slice of every label is then restored exactly as drawn (including slices
    declared empty). Returns the label map and the per-label slice confidence.
    """
    shape = annotation.canonical_shape
    labels = np.zeros(shape, dtype=label_dtype(max(per_label, default=1)))
    boxes = {}
    for value, result in per_label.items():
        box = result.box or (slice(None),) * 3
        box_shape = tuple(len(range(*part.indices(n))) for part, n in zip(box, shape))
        if result.probability.shape != box_shape:
            raise ValueError(f"Label {value}: probability shape {result.probability.shape} is not {box_shape}")
        boxes[value] = (range(*box[0].indices(shape[0])), box[1], box[2])
    # one slice at a time: the running best probability is one slice, not a second volume (a
    # clinical grid's float32 volume is 400 MB to allocate and fill for nothing)
    for z in range(shape[0]):
        best = None
        for value, result in per_label.items():
            slices, rows, cols = boxes[value]
            if z not in slices:
                continue
            if best is None:
                best = np.full(shape[1:], 0.5, dtype=np.float32)
            probability = result.probability[slices.index(z)]
            best_here, labels_here = best[rows, cols], labels[z, rows, cols]  # views
            wins = probability > best_here
            labels_here[wins] = value
            best_here[wins] = probability[wins]
    labels = annotation.restore_annotated(labels)
    confidence = {value: result.slice_confidence.astype(np.float32) for value, result in per_label.items()}
    return annotation.labels.with_array(annotation.from_canonical(labels)), confidence


def per_label_prediction(
    engine_name: str,
    annotation: SparseAnnotation,
    propagate_label,
    *,
    progress: Progress,
    cancel: CancelToken | None,
    timer: Timer | None = None,
    counters: dict | None = None,
) -> Prediction:
    """Run ``propagate_label(value) -> LabelProbability`` for every label and combine them."""
    timer = timer or Timer()
    counters = dict(counters or {})
    per_label: dict[int, LabelProbability] = {}
    values = annotation.label_values
    for i, value in enumerate(values):
        if cancel is not None:
            cancel.raise_if_cancelled()
        with timer.stage(f"label {value}"):
            per_label[value] = propagate_label(value)
        progress(f"{engine_name}: labels", i + 1, len(values))
    with timer.stage("combine"):
        labels, confidence = combine_labels(annotation, per_label)
    expected = {v: r.expected_dice for v, r in per_label.items() if r.expected_dice is not None}
    details = {v: r.details for v, r in per_label.items() if r.details}
    return Prediction(
        labels=labels,
        slice_confidence=confidence,
        expected_dice=expected,
        seconds=timer.seconds,
        counters=counters,
        axis=annotation.axis,
        details=details,
    )
