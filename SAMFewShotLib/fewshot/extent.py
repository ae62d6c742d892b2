"""Which slices the ``fewshot`` engine predicts, and the per-label probabilities it returns.

Per label L, in the canonical orientation (annotated axis first):

1. Core range: every slice between L's outermost drawn slices that is not annotated for L.
2. Outward, from each end of the core range separately: the next ``outward_batch`` slices are
   predicted in one batch (all labels and both directions together); walking outward, L
   keeps every slice until the first whose prediction is empty (fewer than ``min_pixels``
   pixels above 0.5), which ends L in that direction; a full batch of non-empty slices asks
   for the next batch. A slice declared empty for L, or the volume's end, also ends it.

Annotated slices keep their drawing (probability 1 inside, 0 outside); slices never
predicted have probability 0. Slice confidence: 1 on annotated slices, the mean probability of
the pixels predicted inside on the others (0 for an empty prediction).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..annotation import SparseAnnotation
from ..prediction import LabelProbability
from ..progress import CancelToken, Progress, no_progress
from .predictor import SlicePredictor

#: Slices per label and direction in one outward batch.
OUTWARD_BATCH = 4
#: Pixels above 0.5 a predicted slice needs to count as non-empty.
MIN_PIXELS = 1


def slice_confidence(probability: np.ndarray) -> float:
    """Mean probability of the (rows, cols) pixels above 0.5; 0 when there are none."""
    inside = probability > 0.5
    return float(probability[inside].mean()) if inside.any() else 0.0


def propagate_labels(
    predictor: SlicePredictor,
    annotation: SparseAnnotation,
    values: Sequence[int],
    *,
    outward_batch: int = OUTWARD_BATCH,
    min_pixels: int = MIN_PIXELS,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> dict[int, LabelProbability]:
    """Predict ``values`` (label index i = ``values[i]`` in the predictor's decoder) over the
    slices chosen as the module doc says; {label value: :class:`LabelProbability`}."""
    if outward_batch < 1 or min_pixels < 1:
        raise ValueError(f"outward_batch and min_pixels must be >= 1, not {outward_batch} and {min_pixels}")
    n = annotation.n_slices
    index = {v: i for i, v in enumerate(values)}
    kept: dict[int, dict[int, np.ndarray]] = {v: {} for v in values}
    core = {v: (annotation.drawn_slices(v)[0], annotation.drawn_slices(v)[-1]) for v in values}
    annotated = {v: set(annotation.annotated_slices(v)) for v in values}
    requests = [(z, index[v]) for v in values for z in range(core[v][0], core[v][1] + 1) if z not in annotated[v]]
    for (z, i), probability in predictor.predict(requests, progress=progress, cancel=cancel).items():
        kept[values[i]][z] = probability
    ends: dict[tuple[int, int], int | None] = {}
    frontier = {(v, d): core[v][0] - 1 if d < 0 else core[v][1] + 1 for v in values for d in (-1, 1)}
    while frontier:
        plan = {}
        for (v, d), z in frontier.items():
            batch = []
            while len(batch) < outward_batch and 0 <= z < n and z not in annotated[v]:
                batch.append(z)
                z += d
            plan[(v, d)] = batch
        predicted = predictor.predict(
            [(z, index[v]) for (v, _), batch in plan.items() for z in batch], progress=progress, cancel=cancel
        )
        frontier = {}
        for (v, d), batch in plan.items():
            for z in batch:
                probability = predicted[(z, index[v])]
                if int((probability > 0.5).sum()) < min_pixels:
                    ends[(v, d)] = z
                    break
                kept[v][z] = probability
            else:
                if len(batch) == outward_batch:
                    frontier[(v, d)] = batch[-1] + d
                else:
                    ends[(v, d)] = None
    return {v: _label_probability(annotation, v, kept[v], core[v], ends) for v in values}


def _label_probability(
    annotation: SparseAnnotation, value: int, kept: dict[int, np.ndarray], core: tuple[int, int], ends: dict
) -> LabelProbability:
    """The label's probability over the slices it reaches, drawn slices as drawn."""
    drawn = annotation.drawn_slices(value)
    covered = set(kept) | set(drawn)
    low, high = min(covered), max(covered)
    shape = annotation.canonical_shape
    probability = np.zeros((high - low + 1, *shape[1:]), np.float32)
    confidence = np.zeros(shape[0], np.float32)
    for z, p in kept.items():
        probability[z - low] = p
        confidence[z] = slice_confidence(p)
    mask = annotation.mask(value)
    for z in annotation.annotated_slices(value):
        if low <= z <= high:
            probability[z - low] = mask[z]
        confidence[z] = 1.0
    return LabelProbability(
        probability=probability,
        slice_confidence=confidence,
        details={
            "drawn_range": list(core),
            "predicted_range": [low, high],
            "slices_predicted": len(kept),
            "stopped_at": {"below": ends.get((value, -1)), "above": ends.get((value, 1))},
        },
        box=(slice(low, high + 1), slice(None), slice(None)),
    )
