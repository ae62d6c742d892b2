"""Chained slice-to-slice propagation of one label's masks (SAM-MPA mask propagation).

Between two drawn slices a and b the mask is chained from a towards b and from b towards a,
and the two chains are fused with weights falling linearly with distance. Beyond the outermost
drawn slice (or up to a slice declared empty) the mask is chained outward, trimmed at each step
by the structure's intensity model, and the chain stops when the trimmed area falls below
``stop_fraction`` of the area it started from: the stop rule sees only the image and the
annotated slices, never the true extent.

Everything here works in the canonical orientation: (n_slices, rows, cols), annotated axis first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..progress import CancelToken
from .intensity_model import IntensityModel
from .slice_flows import SliceFlows
from .slice_registration import warp


@dataclass
class ChainSettings:
    """Settings of the chained propagation.

    Attributes:
        stop_fraction: an outward chain stops at the first slice whose trimmed mask is smaller
            than this fraction of the starting mask's area.
        prior_cap: cap of the warped mask used as prior when trimming (see IntensityModel.trim).
        trim_between: also trim the chains between two drawn slices.
        confidence_decay_slices: outward confidence decays as exp(-distance / this).
    """

    stop_fraction: float = 0.1
    prior_cap: float = 0.9
    trim_between: bool = False
    confidence_decay_slices: float = 10.0


@dataclass
class ChainResult:
    """probability: (n, rows, cols) float32 in [0, 1] inside the crop; confidence: (n,)."""

    probability: np.ndarray
    confidence: np.ndarray
    stopped_at: dict[str, int | None]


def _chain(
    start_mask: np.ndarray,
    slices: range,
    flows: SliceFlows,
    crop: tuple[slice, slice],
    model: IntensityModel | None,
    settings: ChainSettings,
    image: np.ndarray,
    stop: bool,
    cancel: CancelToken | None,
) -> list[tuple[int, np.ndarray, float]]:
    """Chain ``start_mask`` (at slices.start - slices.step) through ``slices``.

    Returns [(slice, soft mask, mean P(inside) under the mask), ...]; with ``stop`` the chain ends
    before the first slice whose trimmed area drops under the stop fraction.
    """
    mask = start_mask.astype(np.float32)
    start_area = max(float((start_mask > 0.5).sum()), 1.0)
    previous = slices.start - slices.step
    out = []
    for z in slices:
        if cancel is not None:
            cancel.raise_if_cancelled()
        mask = warp(mask, flows.step(previous, z, crop))
        agreement = 1.0
        if model is not None:
            mask = model.trim(mask, image[z][crop], settings.prior_cap)
            inside = mask > 0.5
            agreement = float(model.probability(image[z][crop][inside]).mean()) if inside.any() else 0.0
            if stop and inside.sum() < settings.stop_fraction * start_area:
                break
        out.append((z, mask, agreement))
        previous = z
    return out


def propagate_label_masks(
    image: np.ndarray,
    drawn: dict[int, np.ndarray],
    empty: set[int],
    flows: SliceFlows,
    crop: tuple[slice, slice],
    settings: ChainSettings | None = None,
    cancel: CancelToken | None = None,
) -> ChainResult:
    """Propagate one label's drawn masks through the stack.

    Args:
        image: (n, rows, cols) intensities (raw values, for the intensity model), canonical.
        drawn: {slice: (crop rows, crop cols) bool mask} of the slices holding the label.
        empty: slices declared free of the label; chains never cross them.
        flows: adjacent-slice registrations of the stack.
        crop: in-plane crop (rows, cols) that ``drawn`` masks and the result live in.
    Returns:
        ChainResult with probability (n, crop rows, crop cols).
    """
    settings = settings or ChainSettings()
    n = image.shape[0]
    rows = crop[0].stop - crop[0].start
    cols = crop[1].stop - crop[1].start
    probability = np.zeros((n, rows, cols), np.float32)
    confidence = np.zeros(n, np.float32)
    model = IntensityModel([image[z][crop] for z in drawn], list(drawn.values()))
    between_model = model if settings.trim_between else None
    marks = sorted([(z, True) for z in drawn] + [(z, False) for z in empty])
    stopped: dict[str, int | None] = {"low": None, "high": None}

    for z, mask in drawn.items():
        probability[z] = mask
        confidence[z] = 1.0
    for z in empty:
        confidence[z] = 1.0

    def outward(start: int, direction: int, limit: int, side: str) -> None:
        slices = range(start + direction, limit, direction)
        if len(slices) == 0:
            return
        chain = _chain(drawn[start], slices, flows, crop, model, settings, image, True, cancel)
        for z, mask, agreement in chain:
            probability[z] = mask
            confidence[z] = agreement * np.exp(-abs(z - start) / settings.confidence_decay_slices)
        last = chain[-1][0] if chain else start
        stopped[side] = last if last + direction != limit else None

    first, last = marks[0], marks[-1]
    if first[1]:
        outward(first[0], -1, -1, "low")
    if last[1]:
        outward(last[0], +1, n, "high")
    for (a, a_drawn), (b, b_drawn) in zip(marks[:-1], marks[1:]):
        if b - a < 2:
            continue
        if a_drawn and b_drawn:
            up = _chain(drawn[a], range(a + 1, b), flows, crop, between_model, settings, image, False, cancel)
            down = dict(
                (z, m)
                for z, m, _ in _chain(drawn[b], range(b - 1, a, -1), flows, crop, between_model, settings, image, False, cancel)
            )
            for z, mask_up, _ in up:
                w = (b - z) / (b - a)
                probability[z] = w * mask_up + (1 - w) * down[z]
                confidence[z] = _soft_dice(mask_up, down[z])
        elif a_drawn:
            outward(a, +1, b, "high")
        elif b_drawn:
            outward(b, -1, a, "low")
    return ChainResult(probability=probability, confidence=confidence, stopped_at=stopped)


def _soft_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two thresholded soft masks (1 when both are empty)."""
    a, b = a > 0.5, b > 0.5
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)
