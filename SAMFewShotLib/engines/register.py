"""Engine ``register``: SAM-MPA mask propagation by slice-to-slice registration.

Each adjacent slice pair is registered once (TV-L1 optical flow by default; DIS or elastix
B-spline on request) inside a crop around the structure, and the drawn masks are chained through the
resulting displacement fields: both directions fused between drawn slices, intensity-trimmed
extrapolation with a stop rule beyond them (see ``propagation/mask_chain.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..annotation import SparseAnnotation
from ..progress import CancelToken, Progress, no_progress
from ..propagation.mask_chain import ChainSettings, propagate_label_masks, robust_range
from ..propagation.slice_flows import SliceFlows
from ..propagation.slice_registration import DEFAULT_REGISTRAR, make_registrar
from ..volume import Volume
from .base import LabelProbability, Prediction, Timer, check_same_grid, per_label_prediction

#: Crop margin around a structure's drawn masks, as a fraction of their in-plane extent ...
CROP_MARGIN_FRACTION = 0.25
#: ... and at least this many pixels.
CROP_MARGIN_MIN_PX = 8
#: Window for registration: these percentiles of the values in and around the drawn masks.
WINDOW_PERCENTILES = (0.5, 99.5)
#: Width of the neighbourhood (pixels) around drawn masks that sets the registration window.
WINDOW_BAND_PX = 8


def structure_crop(masks: list[np.ndarray], shape: tuple[int, int]) -> tuple[slice, slice]:
    """In-plane (rows, cols) crop around the union of ``masks`` with a margin, inside ``shape``."""
    union = np.logical_or.reduce(masks)
    crop = []
    for axis, size in enumerate(shape):
        present = np.flatnonzero(union.any(axis=1 - axis))
        lo, hi = int(present[0]), int(present[-1]) + 1
        margin = max(CROP_MARGIN_MIN_PX, int(round(CROP_MARGIN_FRACTION * (hi - lo))))
        crop.append(slice(max(lo - margin, 0), min(hi + margin, size)))
    return crop[0], crop[1]


def registration_window(stack: np.ndarray, annotation: SparseAnnotation) -> tuple[float, float]:
    """(low, high) intensity window for registration, from the values in and around all drawn
    masks of all labels (so one set of registrations serves every label)."""
    from scipy import ndimage

    drawn = annotation.to_canonical(annotation.labels.array) != 0
    values = []
    for z in np.flatnonzero(drawn.any(axis=(1, 2))):
        neighbourhood = ndimage.binary_dilation(drawn[z], iterations=WINDOW_BAND_PX)
        values.append(stack[z][neighbourhood])
    low, high = np.percentile(np.concatenate(values), WINDOW_PERCENTILES)
    return float(low), float(max(high, low + 1e-3))


def slice_progress(progress: Progress, engine: str, value: int) -> Callable[[int, int], None]:
    """An ``on_slice`` callback reporting stage "<engine>: label <value>" to ``progress``."""
    return lambda done, total: progress(f"{engine}: label {value}", done, total)


@dataclass
class PreparedImage:
    """What every label's propagation shares.

    Attributes:
        stack: (n_slices, rows, cols) float32 intensities, annotated axis first.
        value_range: p99.5 - p0.5 of the intensities.
        flows: memoised adjacent-slice registrations of the normalised stack.
    """

    stack: np.ndarray
    value_range: float
    flows: SliceFlows


class RegisterEngine:
    """Registration-based propagation (SAM-MPA).

    Args:
        backend: "dis" (OpenCV DIS optical flow), "tvl1" (TV-L1 optical flow) or "elastix".
        settings: chaining and stop-rule settings.
    """

    name = "register"

    def __init__(self, backend: str = DEFAULT_REGISTRAR, settings: ChainSettings | None = None) -> None:
        self.registrar = make_registrar(backend)
        self.backend = backend
        self.settings = settings or ChainSettings()

    def prepare(self, image: Volume, annotation: SparseAnnotation) -> PreparedImage:
        """Canonical float32 stack, its value range and its (empty) registration cache."""
        check_same_grid(image, annotation)
        stack = annotation.to_canonical(image.array).astype(np.float32)
        low, high = registration_window(stack, annotation)
        normalised = np.clip((stack - low) / (high - low), 0.0, 1.0).astype(np.float32)
        spacing = annotation.spacing_canonical
        flows = SliceFlows(normalised, (spacing[1], spacing[2]), self.registrar)
        return PreparedImage(stack=stack, value_range=robust_range(stack), flows=flows)

    @staticmethod
    def crop(annotation: SparseAnnotation, value: int) -> tuple[slice, slice]:
        """The in-plane crop of label ``value``: around all its drawn masks."""
        mask = annotation.mask(value)
        return structure_crop([mask[z] for z in annotation.drawn_slices(value)], mask.shape[1:])

    def propagate_label(
        self,
        prepared: PreparedImage,
        annotation: SparseAnnotation,
        value: int,
        drawn_slices: list[int] | None = None,
        cancel: CancelToken | None = None,
        only: int | None = None,
        crop: tuple[slice, slice] | None = None,
        on_slice: Callable[[int, int], None] | None = None,
    ) -> LabelProbability:
        """Propagate label ``value``; ``drawn_slices`` restricts the drawn slices used (auto's
        leave-one-out), default all of them; ``only`` computes just that slice; ``crop`` is the
        in-plane crop, default :func:`structure_crop` of the label's drawn slices; ``on_slice(done,
        total)`` reports the slices filled."""
        mask = annotation.mask(value)
        if crop is None:
            crop = self.crop(annotation, value)
        drawn_slices = annotation.drawn_slices(value) if drawn_slices is None else drawn_slices
        drawn = {z: mask[z][crop] for z in drawn_slices}
        result = propagate_label_masks(
            prepared.stack,
            drawn,
            set(annotation.empty_slices.get(value, ())),
            prepared.flows,
            crop,
            self.settings,
            cancel,
            only,
            prepared.value_range,
            annotation.spacing_canonical,
            on_slice,
        )
        return LabelProbability(
            probability=result.probability,
            box=(slice(0, mask.shape[0]), crop[0], crop[1]),
            slice_confidence=result.confidence,
            details={
                "stopped_at": result.stopped_at,
                "intensity_separability": round(result.separability, 3),
                "backend": self.backend,
            },
        )

    def propagate(
        self,
        image: Volume,
        annotation: SparseAnnotation,
        *,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> Prediction:
        timer = Timer()
        with timer.stage("prepare"):
            prepared = self.prepare(image, annotation)
        with prepared.flows:
            prediction = per_label_prediction(
                self.name,
                annotation,
                lambda value: self.propagate_label(
                    prepared, annotation, value, cancel=cancel, on_slice=slice_progress(progress, self.name, value)
                ),
                progress=progress,
                cancel=cancel,
                timer=timer,
            )
        self.record_registrations(prediction, prepared)
        return prediction

    def record_registrations(self, prediction: Prediction, prepared: PreparedImage) -> None:
        """Add the registration time and counters of ``prepared`` to ``prediction``."""
        flows = prepared.flows
        prediction.seconds["registration"] = flows.seconds
        prediction.counters.update(
            registrations=flows.registrations,
            registration_cache_hits=flows.cache_hits,
            registration_workers=flows.workers,
            backend=self.backend,
        )
