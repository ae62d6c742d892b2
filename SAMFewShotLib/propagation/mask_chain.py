"""Chained slice-to-slice propagation of one label's masks (SAM-MPA mask propagation).

Between two drawn slices a and b the mask is chained from a towards b and from b towards a,
and the two chains are fused with weights falling linearly with distance. Beyond the outermost
drawn slice (or up to a slice declared empty) the mask is chained outward and, at each step,
trimmed by the structure's intensity model (learnt from the drawn slices), grown into
structure-like tissue where the registration says the structure widens, and capped by the
outward area trend of the two outermost drawn slices. The chain stops when the trimmed area
falls below ``stop_fraction`` of the area it started from or the area trend reaches zero: the
stop rule sees only the image and the annotated slices, never the true extent.

That is the ``nearest`` support (``ChainSettings.support``). With ``kcentroid`` or
``kcentroid-direct`` (SAM-MPA), the same run decides which slices hold the structure, and then
every one of them takes its mask from its cluster's centre instead (``support_propagation.py``):
the drawn slice nearest in feature space, chained or registered directly onto it. A slice beyond
the drawn slices whose centre is the drawn slice its outward chain started from keeps that chain
(trimmed and grown at every step); one taken from another centre is trimmed once by the
intensity model. With one drawn slice every support is ``nearest``.

Everything here works in the canonical orientation: (n_slices, rows, cols), annotated axis first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from ..progress import CancelToken
from .intensity_model import IntensityModel
from .slice_flows import SliceFlows
from .slice_registration import warp
from .support_names import DEFAULT_SUPPORT, SUPPORT_MODES


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
        support: which drawn slice a slice takes its mask from: "nearest", "kcentroid" or
            "kcentroid-direct" (see the module docstring and ``support_names.py``).
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
    support: str = DEFAULT_SUPPORT

    def __post_init__(self) -> None:
        if self.support not in SUPPORT_MODES:
            raise ValueError(f"Support must be one of {', '.join(SUPPORT_MODES)}, not {self.support!r}")


@dataclass
class ChainResult:
    """probability: (n, rows, cols) float32 in [0, 1] inside the crop; confidence: (n,);
    centres: {slice: the drawn slice it took its mask from} with a k-centroid support, else None."""

    probability: np.ndarray
    confidence: np.ndarray
    stopped_at: dict[str, int | None]
    separability: float
    centres: dict[int, int] | None = None


class LabelChain:
    """One label's chained propagation through a stack (see the module docstring).

    Args:
        image: (n, rows, cols) intensities (raw values, for the intensity model), canonical.
        drawn: {slice: (crop rows, crop cols) bool mask} of the slices holding the label.
        empty: slices declared free of the label; chains never cross them.
        flows: adjacent-slice registrations of the stack.
        crop: in-plane crop (rows, cols) that ``drawn`` masks and the result live in.
        settings: chaining and stop-rule settings.
        value_range: robust value range of the whole image (intensity model bin width).
        spacing: (slice, row, col) voxel size in mm.
        cancel: polled before every slice.
        on_slice: called as ``on_slice(done, total)`` as slices are filled (total = n).
    """

    def __init__(
        self,
        image: np.ndarray,
        drawn: dict[int, np.ndarray],
        empty: set[int],
        flows: SliceFlows,
        crop: tuple[slice, slice],
        settings: ChainSettings,
        value_range: float,
        spacing: tuple[float, float, float],
        cancel: CancelToken | None = None,
        on_slice: Callable[[int, int], None] | None = None,
    ) -> None:
        self.image, self.drawn, self.empty, self.flows, self.crop = image, drawn, empty, flows, crop
        self.settings, self.cancel, self.on_slice = settings, cancel, on_slice
        self.model = IntensityModel([image[z][crop] for z in drawn], list(drawn.values()), value_range)
        self.marks = sorted([(z, True) for z in drawn] + [(z, False) for z in empty])
        self.blind_reach = self._blind_reach(spacing)
        n = image.shape[0]
        rows, cols = crop[0].stop - crop[0].start, crop[1].stop - crop[1].start
        self.probability = np.zeros((n, rows, cols), np.float32)
        self.confidence = np.zeros(n, np.float32)
        self.stopped: dict[str, int | None] = {"low": None, "high": None}
        self.filled: set[int] = set()  # slices the chains reached (drawn ones excluded)
        self.outward_from: dict[int, int] = {}  # {slice: the drawn slice its outward chain started at}
        self._filled = 0

    def _blind_reach(self, spacing: tuple[float, float, float]) -> int | None:
        """How far outward chains may go when intensities are uninformative (None: no limit)."""
        if self.model.separability >= self.settings.blind_separability:
            return None
        if len(self.drawn) >= 2:
            mean_gap = (max(self.drawn) - min(self.drawn)) / (len(self.drawn) - 1)
            return int(np.ceil(self.settings.blind_reach_of_gap * mean_gap))
        (only_mask,) = self.drawn.values()
        diameter_mm = 2.0 * np.sqrt(only_mask.sum() * spacing[1] * spacing[2] / np.pi)
        return int(np.ceil(0.5 * diameter_mm / spacing[0]))

    def _tick(self, count: int = 1) -> None:
        self._filled += count
        if self.on_slice is not None:
            self.on_slice(min(self._filled, len(self.confidence)), len(self.confidence))

    def chain(
        self, start_mask: np.ndarray, slices: range, outward: bool, area_slope: float | None = None
    ) -> list[tuple[int, np.ndarray, float]]:
        """Chain ``start_mask`` (at slices.start - slices.step) through ``slices``.

        Returns [(slice, soft mask, mean P(inside) under the mask), ...]. Outward chains are
        trimmed (and grown) by the intensity model and end before the first slice whose trimmed
        area drops under the stop fraction; ``area_slope`` (pixels per slice, negative) caps the
        area at ``start_area + area_slope * distance``.
        """
        settings, crop, flows = self.settings, self.crop, self.flows
        model = self.model if outward or settings.trim_between else None
        mask = start_mask.astype(np.float32)
        start_area = max(float((start_mask > 0.5).sum()), 1.0)
        origin = previous = slices.start - slices.step
        out = []
        for z in slices:
            if self.cancel is not None:
                self.cancel.raise_if_cancelled()
            if not flows.has(previous, z, crop):
                ahead = [z_next for z_next in slices if (z_next - z) * slices.step >= 0][: 2 * flows.workers]
                flows.prefetch([(z_next - slices.step, z_next) for z_next in ahead], crop, self.cancel)
            area_before = float((mask > 0.5).sum())
            mask = warp(mask, flows.step(previous, z, crop))
            expanding = float((mask > 0.5).sum()) > area_before * (1.0 + settings.grow_when_expanding)
            agreement = 1.0
            if model is not None:
                image = self.image[z][crop]
                mask = model.trim(mask, image, settings.prior_cap)
                if settings.grow_threshold < 1.0 and expanding:
                    mask = model.grow(mask, image, settings.grow_threshold, settings.grow_px)
                inside = mask > 0.5
                agreement = float(model.probability(image[inside]).mean()) if inside.any() else 0.0
                if outward and inside.sum() < settings.stop_fraction * start_area:
                    break
            if area_slope is not None:
                cap = start_area + area_slope * abs(z - origin)
                if cap < 1:
                    break
                mask = shrink_to_area(mask, int(round(cap)))
            out.append((z, mask, agreement))
            previous = z
        return out

    def outward(self, start: int, direction: int, limit: int, side: str, only: int | None) -> None:
        """Extrapolate from drawn slice ``start`` towards ``limit`` (exclusive)."""
        slices = range(start + direction, limit, direction)
        if self.blind_reach is not None:
            slices = slices[: self.blind_reach]
        if len(slices) == 0 or (only is not None and only not in slices):
            return
        if only is not None:
            slices = range(start + direction, only + direction, direction)
        inward = [z for z, _ in self.marks if (z - start) * direction < 0]
        neighbour = (inward[-1] if direction > 0 else inward[0]) if inward else None
        if neighbour is not None and neighbour not in self.drawn:
            neighbour = None
        slope = outward_area_slope(self.drawn, start, neighbour, self.settings.area_trend_reach)
        chain = self.chain(self.drawn[start], slices, outward=True, area_slope=slope)
        for z, mask, agreement in chain:
            self.filled.add(z)
            self.outward_from[z] = start
            self.probability[z] = mask
            self.confidence[z] = agreement * np.exp(-abs(z - start) / self.settings.confidence_decay_slices)
        self._tick(len(chain))
        last = chain[-1][0] if chain else start
        self.stopped[side] = last if last + direction != limit else None

    def between(self, a: int, b: int, only: int | None) -> None:
        """Fill the slices between drawn slices a < b: both chains, fused by distance."""
        up_to, down_to = (b, a) if only is None else (only + 1, only - 1)
        up = self.chain(self.drawn[a], range(a + 1, up_to), outward=False)
        down = {z: m for z, m, _ in self.chain(self.drawn[b], range(b - 1, down_to, -1), outward=False)}
        for z, mask_up, _ in up:
            if z not in down:  # only part of the gap was chained (``only``)
                continue
            self.filled.add(z)
            w = (b - z) / (b - a)
            self.probability[z] = w * mask_up + (1 - w) * down[z]
            self.confidence[z] = _soft_dice(mask_up, down[z])
            self._tick()

    def run(self, only: int | None = None) -> ChainResult:
        """Propagate everywhere, or just what slice ``only`` needs (validation; other slices 0)."""
        for z, mask in self.drawn.items():
            self.probability[z] = mask
            self.confidence[z] = 1.0
        for z in self.empty:
            self.confidence[z] = 1.0
        self._tick(len(self.drawn) + len(self.empty))
        pairs = list(zip(self.marks[:-1], self.marks[1:]))
        # Every pair between two drawn slices is needed: register them in parallel up front.
        needed = []
        for (a, a_drawn), (b, b_drawn) in pairs:
            if a_drawn and b_drawn and (only is None or a < only < b):
                up_to, down_to = (b - 1, a + 1) if only is None else (only, only)
                needed += [(z - 1, z) for z in range(a + 1, up_to + 1)]
                needed += [(z + 1, z) for z in range(down_to, b)]
        self.flows.prefetch(needed, self.crop, self.cancel)
        n = len(self.confidence)
        (first, first_drawn), (last, last_drawn) = self.marks[0], self.marks[-1]
        if first_drawn:
            self.outward(first, -1, -1, "low", only)
        if last_drawn:
            self.outward(last, +1, n, "high", only)
        for (a, a_drawn), (b, b_drawn) in pairs:
            if b - a < 2:
                continue
            if a_drawn and b_drawn:
                if only is None or a < only < b:
                    self.between(a, b, only)
            elif a_drawn:
                self.outward(a, +1, b, "high", only)
            elif b_drawn:
                self.outward(b, -1, a, "low", only)
        centres = self.from_centres() if self.settings.support != "nearest" and len(self.drawn) >= 2 else None
        if self.on_slice is not None:
            self.on_slice(n, n)
        return ChainResult(
            probability=self.probability,
            confidence=self.confidence,
            stopped_at=self.stopped,
            separability=self.model.separability,
            centres=centres,
        )

    def from_centres(self) -> dict[int, int]:
        """Refill the slices the chains reached from their cluster centres (k-centroid support,
        see the module docstring); returns {slice: centre} for every slice reached."""
        from .support_clusters import support_clusters
        from .support_propagation import centre_masks

        assigned = support_clusters(self.image[:, self.crop[0], self.crop[1]], sorted(self.drawn))
        refill = [z for z in sorted(self.filled) if self.outward_from.get(z) != assigned[z]]
        masks, _ = centre_masks(
            self.image, self.drawn, refill, self.flows, self.crop, self.settings.support, self.empty, self.cancel,
            assigned,
        )
        for z, mask in masks.items():
            if z in self.outward_from:
                mask = self.model.trim(mask, self.image[z][self.crop], self.settings.prior_cap)
            self.probability[z] = mask
        return {z: assigned[z] for z in sorted(self.filled)}


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
    on_slice: Callable[[int, int], None] | None = None,
) -> ChainResult:
    """Propagate one label's drawn masks through the stack (see :class:`LabelChain` for the
    arguments); ``only`` computes just what that slice needs; ``value_range`` defaults to
    :func:`robust_range` of ``image``. Returns probability (n, crop rows, crop cols)."""
    chain = LabelChain(
        image,
        drawn,
        empty,
        flows,
        crop,
        settings or ChainSettings(),
        robust_range(image) if value_range is None else value_range,
        spacing,
        cancel,
        on_slice,
    )
    return chain.run(only)


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
