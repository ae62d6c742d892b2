"""Pseudo-labels for the unlabelled volumes of a study, with a per-volume and a per-voxel
confidence, from plug-and-play sources; SFR+ selection of the most confident ones.

A *source* is any callable ``source(labelled_image, labelled_labels, image, progress=...,
cancel=...) -> PseudoLabel`` with a ``name``. Built in (:func:`make_source`):

- ``"atlas"``: the labelled volume as an elastix atlas (:func:`SAMFewShotLib.atlas.registration.register`,
  affine + B-spline), no weights needed.
- ``"none"``: the labelled volume's labels copied onto the image's grid in physical space (no
  registration): the honest baseline every registration must beat.
- ``"sam"``: the paper's way: SAM's decoder fine-tuned on the labelled volume's mosaics
  (:mod:`.mosaic_finetuning`), needs weights.

Any callable with this signature plugs in.

Confidences (all in [0, 1]):

- per voxel, for registration sources: ``1 - exp(-d / tau)`` with ``d`` the distance in mm to the
  nearest pseudo-label boundary (registration errors live at boundaries), ``tau`` = 3 mm; for
  probability sources, the probability of the chosen class rescaled from [1/C, 1] to [0, 1].
- per volume, for registration sources: the correlation of the (warped) labelled image with the
  image inside the pseudo-label's box grown by 10 mm, clipped at 0 (how well the atlas matched);
  for probability sources, the mean per-voxel confidence inside the pseudo-label's box.

SFR+ (:func:`select_confident`) keeps the ``fraction`` most confident volumes and, inside them,
trains only on voxels whose confidence reaches ``voxel_threshold``. It is the ``selection="confidence"``
variant of :func:`~.pipeline.train_study_model`; the default there ranks by agreement with the
teacher during training instead (:class:`~.retraining.RetrainSettings`), because on the CT
benchmark the registration volume confidence above ranked the pseudo-labels backwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress
from ..volume import LabelVolume, Volume

#: Decay length in mm of the boundary-distance voxel confidence.
BOUNDARY_TAU_MM = 3.0
#: Margin in mm around the pseudo-label's box where the volume confidence is measured.
BOX_MARGIN_MM = 10.0
#: Names of the built-in sources.
SOURCES = ("atlas", "none", "sam")


@dataclass
class PseudoLabel:
    """A pseudo-label of one unlabelled image.

    Attributes:
        labels: label map on the image's grid (the labelled volume's segments).
        confidence: (z, y, x) float32 per-voxel confidence in [0, 1], same grid.
        volume_confidence: one number in [0, 1] for the whole volume (higher: more trusted).
        source: the source's name.
        seconds: wall time the source took.
    """

    labels: LabelVolume
    confidence: np.ndarray
    volume_confidence: float
    source: str
    seconds: float = 0.0


class PseudoLabelSource(Protocol):
    name: str

    def __call__(
        self, labelled_image: Volume, labelled_labels: LabelVolume, image: Volume, *,
        progress: Progress = no_progress, cancel: CancelToken | None = None,
    ) -> PseudoLabel: ...


def boundary_confidence(labels: np.ndarray, spacing_zyx: Sequence[float],
                        tau_mm: float = BOUNDARY_TAU_MM) -> np.ndarray:
    """(z, y, x) float32 ``1 - exp(-d / tau_mm)``, d = distance in mm from each voxel to the
    nearest voxel whose face neighbour has another label (0 on such voxels)."""
    labels = np.asarray(labels)
    boundary = np.zeros(labels.shape, dtype=bool)
    for axis in range(3):
        differs = np.diff(labels, axis=axis) != 0
        lead = [slice(None)] * 3
        lead[axis] = slice(0, -1)
        trail = [slice(None)] * 3
        trail[axis] = slice(1, None)
        boundary[tuple(lead)] |= differs
        boundary[tuple(trail)] |= differs
    if not boundary.any():
        return np.ones(labels.shape, dtype=np.float32)
    distance = ndimage.distance_transform_edt(~boundary, sampling=tuple(float(s) for s in spacing_zyx))
    return (1.0 - np.exp(-distance / float(tau_mm))).astype(np.float32)


def _box(mask: np.ndarray, spacing_zyx: Sequence[float], margin_mm: float) -> tuple[slice, ...]:
    """The slices of ``mask``'s bounding box grown by ``margin_mm`` (the whole array when empty)."""
    if not mask.any():
        return tuple(slice(None) for _ in range(3))
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        where = np.flatnonzero(mask.any(axis=other))
        grow = int(math.ceil(margin_mm / float(spacing_zyx[axis])))
        out.append(slice(max(0, where[0] - grow), min(mask.shape[axis], where[-1] + 1 + grow)))
    return tuple(out)


def box_correlation(a: np.ndarray, b: np.ndarray, labels: np.ndarray, spacing_zyx: Sequence[float]) -> float:
    """Pearson correlation of ``a`` and ``b`` inside ``labels``' box grown by
    :data:`BOX_MARGIN_MM`, clipped to [0, 1] (0 for a constant region)."""
    box = _box(np.asarray(labels) > 0, spacing_zyx, BOX_MARGIN_MM)
    x = np.asarray(a, dtype=np.float64)[box].ravel()
    y = np.asarray(b, dtype=np.float64)[box].ravel()
    x, y = x - x.mean(), y - y.mean()
    norm = math.sqrt(float(x @ x) * float(y @ y))
    return float(np.clip((x @ y) / norm, 0.0, 1.0)) if norm > 0 else 0.0


def probability_confidence(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels index (z, y, x) int, per-voxel confidence float32, volume confidence) from (C, z, y, x)
    class probabilities (see the module doc)."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    classes = probabilities.shape[0]
    index = probabilities.argmax(axis=0)
    top = probabilities.max(axis=0)
    confidence = np.clip((top - 1.0 / classes) / (1.0 - 1.0 / classes), 0.0, 1.0).astype(np.float32)
    box = _box(index > 0, (1.0, 1.0, 1.0), 0.0)
    return index, confidence, float(confidence[box].mean())


class AtlasSource:
    """Pseudo-labels by elastix registration of the labelled volume (see the module doc).

    Args:
        parameters: registration settings (:data:`SAMFewShotLib.atlas.registration.DEFAULT_PARAMETERS`).
    """

    name = "atlas"

    def __init__(self, parameters: dict | None = None) -> None:
        from ..atlas.registration import check_parameters

        self.parameters = check_parameters(parameters)

    def __call__(self, labelled_image, labelled_labels, image, *, progress=no_progress, cancel=None) -> PseudoLabel:
        import time

        from ..atlas.registration import register

        start = time.perf_counter()
        registration = register(labelled_image, labelled_labels, image, parameters=self.parameters,
                                progress=progress, cancel=cancel)
        labels = registration.labels
        return PseudoLabel(
            labels=labels,
            confidence=boundary_confidence(labels.array, image.spacing_zyx),
            volume_confidence=box_correlation(registration.image.array, image.array, labels.array, image.spacing_zyx),
            source=self.name,
            seconds=time.perf_counter() - start,
        )


class CopySource:
    """Pseudo-labels by copying the labelled volume's labels onto the image's grid in physical
    space (no registration)."""

    name = "none"

    def __call__(self, labelled_image, labelled_labels, image, *, progress=no_progress, cancel=None) -> PseudoLabel:
        import time

        from .resampling import onto_grid

        start = time.perf_counter()
        if cancel is not None:
            cancel.raise_if_cancelled()
        copied = onto_grid(labelled_labels.volume, image)
        moved_image = _linear_onto(labelled_image, image)
        progress("copy labels", 1, 1)
        return PseudoLabel(
            labels=LabelVolume(copied, labelled_labels.segments),
            confidence=boundary_confidence(copied.array, image.spacing_zyx),
            volume_confidence=box_correlation(moved_image, image.array, copied.array, image.spacing_zyx),
            source=self.name,
            seconds=time.perf_counter() - start,
        )


def _linear_onto(volume: Volume, reference: Volume) -> np.ndarray:
    """``volume``'s intensities linearly resampled onto ``reference``'s grid (float32 array)."""
    from .resampling import probabilities_onto_grid

    return probabilities_onto_grid(volume.array[None].astype(np.float32), volume, reference)[0]


def make_source(name: str, **options) -> Callable:
    """The built-in source ``name`` (:data:`SOURCES`); options go to its constructor
    (``parameters``: registration settings for atlas; ``checkpoint``, ``device``, ``iterations``
    for sam)."""
    if name == "atlas":
        return AtlasSource(**options)
    if name == "none":
        return CopySource()
    if name == "sam":
        from .mosaic_finetuning import SamSource

        return SamSource(**options)
    raise InputError(f"The pseudo-label source must be one of {', '.join(SOURCES)}, not {name!r}")


@dataclass(frozen=True)
class Selection:
    """What SFR+ keeps: the indices of the kept pseudo-labels and a per-voxel training weight
    ((z, y, x) float32 in {0, 1}) for each kept one."""

    indices: tuple[int, ...]
    weights: tuple[np.ndarray, ...]


def select_confident(pseudo: Sequence[PseudoLabel], fraction: float | None, voxel_threshold: float = 0.5,
                     soft: bool = False) -> Selection:
    """SFR+: the ``ceil(fraction * N)`` (at least 1) pseudo-labels of highest volume confidence,
    each weighted 1 where its voxel confidence >= ``voxel_threshold``, else 0. ``fraction=None``
    (plain SFR): every pseudo-label, every voxel weighted 1. ``soft``: every kept voxel weighted
    by its confidence instead (no threshold).

    Raises:
        ValueError: fraction outside (0, 1] or voxel_threshold outside [0, 1].
    """
    def weight(p: PseudoLabel) -> np.ndarray:
        if soft:
            return np.asarray(p.confidence, dtype=np.float32)
        if fraction is None:
            return np.ones(p.labels.array.shape, np.float32)
        return (p.confidence >= voxel_threshold).astype(np.float32)

    if fraction is None:
        return Selection(tuple(range(len(pseudo))), tuple(weight(p) for p in pseudo))
    if not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
        raise InputError(f"The kept fraction must be in (0, 1], not {fraction!r}")
    if not 0.0 <= voxel_threshold <= 1.0:
        raise InputError(f"The voxel confidence threshold must be in [0, 1], not {voxel_threshold!r}")
    if not pseudo:
        return Selection((), ())
    keep = max(1, int(math.ceil(fraction * len(pseudo) - 1e-9)))
    most_confident = sorted(range(len(pseudo)), key=lambda i: -pseudo[i].volume_confidence)[:keep]
    order = tuple(sorted(most_confident))
    weights = tuple(weight(pseudo[i]) for i in order)
    return Selection(order, weights)
