"""Chained slice-to-slice propagation of one label's masks (SAM-MPA mask propagation).

Between two drawn slices a and b the mask is chained from a towards b and from b towards a,
and the two chains are fused with weights falling linearly with distance. Beyond the outermost
drawn slice (or up to a slice declared empty) the mask is chained outward and, at each step,
trimmed by the structure's intensity model (learnt from the drawn slices), grown into
structure-like tissue where the registration says the structure widens, and capped by the
outward area trend of the two outermost drawn slices. The chain stops when the trimmed area
falls below ``stop_fraction`` of the area it started from or the area trend reaches zero: the
stop rule sees only the image and the annotated slices, never the true extent.

Everything here works in the canonical orientation: (n_slices, rows, cols), annotated axis first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

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
        area_trend_reach: when the two outermost drawn slices shrink outward, the area is
            extrapolated linearly; the chain stops where that line, stretched by this factor,
            reaches zero, and the mask is shrunk to the line's area on the way.
        grow_threshold: where the registration expands the mask (area up by more than
            ``grow_when_expanding``), the outward chain also takes the ring of ``grow_px`` pixels
            around it whose P(inside | value) reaches this threshold (1 disables growing):
            registration alone under-follows organs that widen quickly.
        blind_separability: below this intensity separability (AUC, see IntensityModel) the stop
            rule is blind and registration has nothing to follow, so outward chains reach at most
            ``blind_reach_of_gap`` times the mean gap between drawn slices (with two or more drawn
            slices: the default 0 does not invent structure beyond them), or, with one drawn
            slice, half the drawn mask's equivalent diameter (a roughly round structure).
    """

    stop_fraction: float = 0.1
    prior_cap: float = 0.9
    trim_between: bool = False
    confidence_decay_slices: float = 10.0
    area_trend_reach: float = 1.0
    grow_threshold: float = 0.8
    grow_px: int = 1
    grow_when_expanding: float = 0.0
    blind_separability: float = 0.65
    blind_reach_of_gap: float = 0.0


@dataclass
class ChainResult:
    """probability: (n, rows, cols) float32 in [0, 1] inside the crop; confidence: (n,)."""

    probability: np.ndarray
    confidence: np.ndarray
    stopped_at: dict[str, int | None]
    separability: float


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
    area_slope: float | None = None,
) -> list[tuple[int, np.ndarray, float]]:
    """Chain ``start_mask`` (at slices.start - slices.step) through ``slices``.

    Returns [(slice, soft mask, mean P(inside) under the mask), ...]; with ``stop`` the chain ends
    before the first slice whose trimmed area drops under the stop fraction. ``area_slope``
    (pixels per slice, negative) caps the area at ``start_area + area_slope * distance``.
    """
    mask = start_mask.astype(np.float32)
    start_area = max(float((start_mask > 0.5).sum()), 1.0)
    previous = slices.start - slices.step
    out = []
    for z in slices:
        if cancel is not None:
            cancel.raise_if_cancelled()
        area_before = float((mask > 0.5).sum())
        mask = warp(mask, flows.step(previous, z, crop))
        expanding = float((mask > 0.5).sum()) > area_before * (1.0 + settings.grow_when_expanding)
        agreement = 1.0
        if model is not None:
            mask = model.trim(mask, image[z][crop], settings.prior_cap)
            if settings.grow_threshold < 1.0 and expanding:
                mask = model.grow(mask, image[z][crop], settings.grow_threshold, settings.grow_px)
            inside = mask > 0.5
            agreement = float(model.probability(image[z][crop][inside]).mean()) if inside.any() else 0.0
            if stop and inside.sum() < settings.stop_fraction * start_area:
                break
        if area_slope is not None:
            cap = start_area + area_slope * abs(z - slices.start + slices.step)
            if cap < 1:
                break
            mask = shrink_to_area(mask, int(round(cap)))
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
    only: int | None = None,
    value_range: float | None = None,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> ChainResult:
    """Propagate one label's drawn masks through the stack.

    Args:
        image: (n, rows, cols) intensities (raw values, for the intensity model), canonical.
        drawn: {slice: (crop rows, crop cols) bool mask} of the slices holding the label.
        empty: slices declared free of the label; chains never cross them.
        flows: adjacent-slice registrations of the stack.
        crop: in-plane crop (rows, cols) that ``drawn`` masks and the result live in.
        only: compute just what slice ``only`` needs (validation); other slices stay 0.
        value_range: robust value range of the whole image (intensity model bin width);
            default: p0.5..p99.5 of ``image``.
        spacing: (slice, row, col) voxel size in mm.
    Returns:
        ChainResult with probability (n, crop rows, crop cols).
    """
    settings = settings or ChainSettings()
    if value_range is None:
        value_range = robust_range(image)
    slice_spacing_mm, pixel_area_mm2 = spacing[0], spacing[1] * spacing[2]
    n = image.shape[0]
    rows = crop[0].stop - crop[0].start
    cols = crop[1].stop - crop[1].start
    probability = np.zeros((n, rows, cols), np.float32)
    confidence = np.zeros(n, np.float32)
    model = IntensityModel([image[z][crop] for z in drawn], list(drawn.values()), value_range)
    blind_reach = None
    if model.separability < settings.blind_separability:
        if len(drawn) >= 2:
            mean_gap = (max(drawn) - min(drawn)) / (len(drawn) - 1)
            blind_reach = int(np.ceil(settings.blind_reach_of_gap * mean_gap))
        else:
            (only_mask,) = drawn.values()
            diameter_mm = 2.0 * np.sqrt(only_mask.sum() * pixel_area_mm2 / np.pi)
            blind_reach = int(np.ceil(0.5 * diameter_mm / slice_spacing_mm))
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
        if len(slices) == 0 or (only is not None and only not in slices):
            return
        inward = [z for z, is_drawn in marks if (z - start) * direction < 0]
        neighbour = (inward[-1] if direction > 0 else inward[0]) if inward else None
        if neighbour is not None and neighbour not in drawn:
            neighbour = None
        slope = outward_area_slope(drawn, start, neighbour, settings.area_trend_reach)
        if blind_reach is not None:
            slices = slices[:blind_reach]
        if only is not None:
            if only not in slices:
                return
            slices = range(start + direction, only + direction, direction)
        chain = _chain(drawn[start], slices, flows, crop, model, settings, image, True, cancel, slope)
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
            if only is not None and not a < only < b:
                continue
            up_to, down_to = (b, a) if only is None else (only + 1, only - 1)
            up = _chain(drawn[a], range(a + 1, up_to), flows, crop, between_model, settings, image, False, cancel)
            down = {
                z: m
                for z, m, _ in _chain(
                    drawn[b], range(b - 1, down_to, -1), flows, crop, between_model, settings, image, False, cancel
                )
            }
            for z, mask_up, _ in up:
                if z not in down:  # only part of the gap was chained (``only``)
                    continue
                w = (b - z) / (b - a)
                probability[z] = w * mask_up + (1 - w) * down[z]
                confidence[z] = _soft_dice(mask_up, down[z])
        elif a_drawn:
            outward(a, +1, b, "high")
        elif b_drawn:
            outward(b, -1, a, "low")
    return ChainResult(
        probability=probability, confidence=confidence, stopped_at=stopped, separability=model.separability
    )


def robust_range(image: np.ndarray) -> float:
    """p99.5 - p0.5 of an image's values (on a subsample of at most ~1e6 voxels)."""
    step = max(1, image.size // 1_000_000)
    low, high = np.percentile(image.ravel()[::step], (0.5, 99.5))
    return float(high - low)


def shrink_to_area(soft_mask: np.ndarray, area: int) -> np.ndarray:
    """The mask eroded evenly (by in-plane distance to its edge) to at most ``area`` pixels."""
    inside = soft_mask > 0.5
    if inside.sum() <= area:
        return soft_mask
    depth = ndimage.distance_transform_edt(inside)
    # Rank inside pixels by depth, ties by the soft value; keep the ``area`` deepest.
    order = np.lexsort((-soft_mask.ravel(), -depth.ravel()))
    keep = np.zeros(soft_mask.size, bool)
    keep[order[: max(area, 0)]] = True
    keep = keep.reshape(soft_mask.shape) & inside
    return np.where(keep, soft_mask, np.minimum(soft_mask, 0.5 - 1e-3)).astype(np.float32)


def outward_area_slope(drawn: dict[int, np.ndarray], start: int, inward: int | None, reach: float) -> float | None:
    """Area change per slice going outward from drawn slice ``start`` (from its drawn neighbour
    ``inward``), divided by ``reach``; None unless the structure shrinks outward."""
    if inward is None:
        return None
    slope = (float(drawn[start].sum()) - float(drawn[inward].sum())) / abs(start - inward)
    return slope / reach if slope < 0 else None


def _soft_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two thresholded soft masks (1 when both are empty)."""
    a, b = a > 0.5, b > 0.5
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)
