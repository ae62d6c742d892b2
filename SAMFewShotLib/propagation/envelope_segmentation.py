"""Segmentation of a large folded structure inside the envelope its drawn slices imply.

Chaining 2D registrations through a hundred slices of white matter or cortex loses the folds:
every step smooths a little and the gyri that appear between two drawn slices are never in any
drawn mask. This module does not follow shapes from slice to slice at all. It

1. builds the structure's *envelope* (where it may be): the signed distance (mm, > 0 inside) of
   each drawn mask (holes filled) is interpolated linearly along the slice axis between drawn
   slices and held constant beyond the outermost ones (shape-based interpolation, Raya & Udupa
   1990); the envelope is where that distance exceeds ``-(margin_mm + margin_growth * gap_mm)``
   between drawn slices, ``gap_mm`` being the distance (mm) to the nearest drawn slice, so it
   widens where the drawn shapes say least (``-margin_mm`` beyond the outermost drawn slices);
2. learns an intensity likelihood from the drawn slices: histograms of the values inside the
   drawn masks and in a ring of ``background_ring_mm`` around them (the tissue the envelope
   holds), giving the log-likelihood ratio ``llr(v) = log p(v | inside) - log p(v | outside)``;
3. adds a spatial prior, the interpolated signed distance over a width that grows with the
   distance to the nearest drawn slice, ``prior(x) = d(x) / (prior_mm + prior_growth * gap_mm)``
   (clipped), so intensity decides where the drawn shapes are vague and the shapes decide where
   the intensity is ambiguous;
4. regularises the posterior log-odds ``llr + prior`` by Gaussian smoothing (``smoothing_mm``),
   a cheap stand-in for a pairwise MRF, thresholds it at 0 inside the envelope and keeps the 3D
   components that touch a drawn mask;
5. ends the structure beyond the outermost drawn slices at the first slice whose segmented area
   falls under ``stop_fraction`` of the nearest drawn mask's area, or grows again by more than
   ``regrowth`` over the smallest area met on the way (a neighbour of similar intensity), or at a
   slice declared empty. Beyond the outermost drawn slices the envelope does not widen.

Every step is a whole-volume numpy/scipy operation on the structure's box (no per-slice
registration), a few seconds for the cerebral white matter of a 1 mm brain on one core.

Arrays are canonical: (n_slices, rows, cols) with the annotated axis first; spacing
(slice, row, col) in mm; masks bool; probabilities float32 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..prediction import LabelProbability
from .intensity_model import _auc
from .working_grid import grown_box


@dataclass
class EnvelopeSettings:
    """Settings of :func:`segment_in_envelope` (lengths in mm).

    Attributes:
        margin_mm: envelope margin around the interpolated shape at a drawn slice.
        margin_growth: extra margin per mm of distance to the nearest drawn slice.
        background_ring_mm: width of the ring around each drawn mask that samples "outside".
        prior_mm: width of the spatial prior's sigmoid at a drawn slice ...
        prior_growth: ... plus this much per mm of distance to the nearest drawn slice.
        prior_cap: the spatial prior's log-odds are clipped to +-this.
        llr_cap: the intensity log-likelihood ratio is clipped to +-this.
        smoothing_mm: Gaussian sigma of the log-odds smoothing (regularisation).
        bins: histogram bins over the drawn slices' value range (inside and ring).
        stop_fraction: beyond the outermost drawn slice, the structure ends at the first slice
            whose area is under this fraction of that drawn mask's area.
        regrowth: ... or whose area exceeds the smallest area met since that drawn slice by more
            than this fraction (the structure has ended and a neighbour of similar intensity
            begins).
        min_separability: below this intensity separability (AUC, see :class:`EnvelopeResult`)
            the intensities cannot carry the segmentation between vague shapes:
            :attr:`EnvelopeResult.reliable` is False and auto does not consider the method.
        reach_of_gap: how far (in mean gaps between drawn slices) the structure may continue
            beyond the outermost drawn slice; with one drawn slice, ``reach_of_radius`` times the
            drawn mask's equivalent radius.
        reach_of_radius: see ``reach_of_gap``.
    """

    margin_mm: float = 5.0
    margin_growth: float = 1.0
    background_ring_mm: float = 6.0
    prior_mm: float = 1.5
    prior_growth: float = 2.0
    prior_cap: float = 4.0
    llr_cap: float = 6.0
    smoothing_mm: float = 0.8
    bins: int = 128
    stop_fraction: float = 0.05
    regrowth: float = 0.3
    min_separability: float = 0.95
    reach_of_gap: float = 1.5
    reach_of_radius: float = 1.0


@dataclass
class EnvelopeResult:
    """One structure's segmentation.

    Attributes:
        probability: (slices, rows, cols) float32 over ``box``: > 0.5 inside, 0 outside.
        box: (slices, rows, cols) slices of the canonical volume ``probability`` covers.
        slice_confidence: (n_slices,) float32 of the whole volume (1 on drawn slices).
        separability: AUC of the intensity likelihood between drawn voxels and their ring.
        reliable: separability reaches ``EnvelopeSettings.min_separability``.
        details: the envelope's size and where the structure was ended.
    """

    probability: np.ndarray
    box: tuple[slice, slice, slice]
    slice_confidence: np.ndarray
    separability: float
    reliable: bool = True
    details: dict = field(default_factory=dict)

    def label_probability(self, shape: tuple[int, int, int]) -> LabelProbability:
        """As a :class:`~SAMFewShotLib.prediction.LabelProbability` of a canonical volume of ``shape``."""
        return LabelProbability(
            probability=self.probability,
            slice_confidence=self.slice_confidence,
            box=self.box,
            details={"intensity_separability": round(self.separability, 3), **self.details},
        )

    def slice_at(self, z: int, shape: tuple[int, int, int]) -> np.ndarray:
        """(rows, cols) probability of canonical slice ``z`` of a volume of ``shape``."""
        return self.label_probability(shape).slice_at(z, shape)


def signed_distance_mm(mask: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """(rows, cols) float32 signed distance (mm) to the edge of a 2D bool mask: > 0 inside,
    <= 0 outside (half a pixel off the edge on either side)."""
    inside = ndimage.distance_transform_edt(mask, sampling=spacing)
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    return (inside - outside).astype(np.float32)


def interpolate_along_slices(maps: dict[int, np.ndarray], low: int, high: int) -> np.ndarray:
    """(high - low, rows, cols) float32: the (rows, cols) ``maps`` given at some slices,
    interpolated linearly along the slice axis between them and held constant beyond them."""
    slices = sorted(maps)
    first = maps[slices[0]]
    out = np.empty((high - low, *first.shape), np.float32)
    for i, z in enumerate(range(low, high)):
        after = next((s for s in slices if s >= z), None)
        before = next((s for s in reversed(slices) if s <= z), None)
        if before is None or after is None or before == after:
            nearest = after if before is None else before
            assert nearest is not None
            out[i] = maps[nearest]
        else:
            t = (z - before) / (after - before)
            out[i] = (1.0 - t) * maps[before] + t * maps[after]
    return out


def _reach(drawn: dict[int, np.ndarray], spacing: tuple[float, float, float], settings: EnvelopeSettings) -> int:
    """Slices the structure may continue beyond the outermost drawn slices."""
    slices = sorted(drawn)
    if len(slices) >= 2:
        mean_gap = (slices[-1] - slices[0]) / (len(slices) - 1)
        return int(np.ceil(settings.reach_of_gap * mean_gap))
    (mask,) = drawn.values()
    radius_mm = np.sqrt(mask.sum() * spacing[1] * spacing[2] / np.pi)
    return int(np.ceil(settings.reach_of_radius * radius_mm / spacing[0]))


class _Likelihood:
    """Clipped log-likelihood ratio of a value from inside/ring histograms (see module docstring)."""

    def __init__(self, inside: np.ndarray, ring: np.ndarray, bins: int, cap: float) -> None:
        both = np.concatenate([inside, ring]).astype(np.float64)
        low, high = np.percentile(both, (0.1, 99.9))
        high = max(float(high), float(low) + 1e-6)
        self.edges = np.linspace(low, high, bins + 1)
        floor = 0.5 / max(both.size, 1)

        def density(values: np.ndarray) -> np.ndarray:
            counts = np.histogram(np.clip(values, low, high), self.edges)[0] / max(values.size, 1)
            return ndimage.gaussian_filter1d(counts, 1.0) + floor

        self.table = np.clip(np.log(density(inside)) - np.log(density(ring)), -cap, cap).astype(np.float32)
        self.separability = _auc(self(inside), self(ring)) if inside.size and ring.size else 0.5

    def __call__(self, values: np.ndarray) -> np.ndarray:
        index = np.clip(np.searchsorted(self.edges, values, side="right") - 1, 0, self.table.size - 1)
        return self.table[index]


def segment_in_envelope(
    image: np.ndarray,
    drawn: dict[int, np.ndarray],
    spacing: tuple[float, float, float],
    empty: set[int] | None = None,
    settings: EnvelopeSettings | None = None,
    only: int | None = None,
) -> EnvelopeResult:
    """Segment one structure from its drawn slices (see the module docstring).

    Args:
        image: (n_slices, rows, cols) intensities, canonical (annotated axis first), any numeric dtype.
        drawn: {slice index: (rows, cols) bool mask} of the slices the structure was drawn on
            (at least one non-empty).
        spacing: (slice, row, col) voxel size in mm.
        empty: slices declared free of the structure: it never reaches them.
        settings: see :class:`EnvelopeSettings`.
        only: compute just what slice ``only`` needs (leave-one-out validation): the slab
            between the drawn slices on either side of it, or from the outermost drawn slice to it.

    Returns:
        The structure's probability over its box; drawn slices hold their drawn masks.

    Raises:
        ValueError: no non-empty drawn mask, or a mask whose shape is not the slices'.
    """
    settings = settings or EnvelopeSettings()
    drawn = {int(z): np.asarray(m, bool) for z, m in drawn.items() if np.asarray(m).any()}
    if not drawn:
        raise ValueError("The envelope segmentation needs at least one non-empty drawn mask")
    n, rows, cols = image.shape
    if any(m.shape != (rows, cols) for m in drawn.values()):
        raise ValueError(f"Drawn masks must be of shape {(rows, cols)}")
    slices = sorted(drawn)
    in_plane = (float(spacing[1]), float(spacing[2]))
    slice_mm = float(spacing[0])

    # The box: drawn masks grown by the widest envelope margin, slices up to the reach.
    reach = _reach(drawn, spacing, settings)
    low, high = max(slices[0] - reach, 0), min(slices[-1] + reach + 1, n)
    for z in sorted(empty or ()):
        if z < slices[0]:
            low = max(low, z + 1)
        elif z > slices[-1]:
            high = min(high, z)
    if only is not None:
        below = [s for s in slices if s <= only]
        above = [s for s in slices if s >= only]
        low = max(low, below[-1] if below else only)
        high = min(high, (above[0] if above else only) + 1)
        if not low <= only < high:  # beyond the reach or past a slice declared empty
            low, high = (slices[0], slices[0] + 1) if only < slices[0] else (slices[-1], slices[-1] + 1)
    widest_gap_mm = max([reach * slice_mm] + [(b - a) * slice_mm / 2 for a, b in zip(slices, slices[1:])])
    grow_mm = settings.margin_mm + settings.margin_growth * widest_gap_mm + settings.smoothing_mm
    crop = grown_box(list(drawn.values()), in_plane, fraction=0.0, min_mm=grow_mm)
    box = (slice(low, high), crop[0], crop[1])
    volume = np.asarray(image[box], np.float32)
    masks = {z: drawn[z][crop] for z in slices}

    # 1. Interpolated signed distances (of the filled masks: the envelope; of the masks
    # themselves: the prior) and the distance (mm) to the nearest drawn slice.
    hulls = {z: signed_distance_mm(ndimage.binary_fill_holes(m), in_plane) for z, m in masks.items()}
    distances = {z: signed_distance_mm(m, in_plane) for z, m in masks.items()}
    gap_mm = np.array([min(abs(z - s) for s in slices) * slice_mm for z in range(low, high)], np.float32)
    between = (np.arange(low, high) > slices[0]) & (np.arange(low, high) < slices[-1])
    margin = settings.margin_mm + settings.margin_growth * np.where(between, gap_mm, 0.0)
    envelope = interpolate_along_slices(hulls, low, high) > -margin[:, None, None]
    sdf = interpolate_along_slices(distances, low, high)

    # 2. Intensity likelihood from the drawn slices (inside vs. the ring around).
    inside_values, ring_values = [], []
    for z in slices:
        values = np.asarray(image[z][crop], np.float32)
        inside_values.append(values[masks[z]])
        ring_values.append(values[(distances[z] <= 0) & (distances[z] > -settings.background_ring_mm)])
    likelihood = _Likelihood(np.concatenate(inside_values), np.concatenate(ring_values), settings.bins,
                             settings.llr_cap)

    # 3-4. Posterior log-odds, smoothed; inside the envelope, connected to a drawn mask.
    width = settings.prior_mm + settings.prior_growth * gap_mm
    log_odds = likelihood(volume)
    log_odds += np.clip(sdf / width[:, None, None], -settings.prior_cap, settings.prior_cap)
    sigma = [settings.smoothing_mm / s for s in (slice_mm, *in_plane)]
    log_odds = ndimage.gaussian_filter(log_odds, sigma, mode="nearest")
    inside = (log_odds > 0) & envelope
    in_box = [z for z in slices if low <= z < high]  # all drawn slices unless ``only`` is given
    for z in in_box:
        inside[z - low] = masks[z]
    components, _ = ndimage.label(inside)
    touching = np.unique(np.concatenate([components[z - low][masks[z]] for z in in_box]))
    inside = np.isin(components, touching[touching > 0])

    # 5. End the structure beyond the outermost drawn slices.
    stopped: dict[str, int | None] = {"low": None, "high": None}
    for side, start, direction in (("low", slices[0], -1), ("high", slices[-1], 1)):
        floor_area = settings.stop_fraction * masks[start].sum()
        smallest = float(masks[start].sum())
        z = start + direction
        while low <= z < high and low <= start < high:
            area = float(inside[z - low].sum())
            smallest = min(smallest, area)
            if area < floor_area or area > (1.0 + settings.regrowth) * smallest:
                cut = slice(low - low, z - low + 1) if direction < 0 else slice(z - low, high - low)
                inside[cut] = False
                stopped[side] = z
                break
            z += direction

    probability = np.where(inside, 1.0 / (1.0 + np.exp(-np.maximum(log_odds, 0.05))), 0.0).astype(np.float32)
    confidence = np.zeros(n, np.float32)
    present = inside.any(axis=(1, 2))
    confidence[low:high] = np.where(present, likelihood.separability * np.exp(-gap_mm / 50.0), 0.0)
    for z in in_box:
        confidence[z] = 1.0
    return EnvelopeResult(
        probability=probability,
        box=box,
        slice_confidence=confidence,
        separability=likelihood.separability,
        reliable=likelihood.separability >= settings.min_separability,
        details={"envelope_voxels": int(envelope.sum()), "stopped_at": stopped},
    )


def leave_one_out_dice(
    image: np.ndarray,
    mask: np.ndarray,
    drawn_slices: list[int],
    spacing: tuple[float, float, float],
    empty: set[int] | None = None,
    settings: EnvelopeSettings | None = None,
) -> dict[int, float]:
    """{drawn slice: Dice of its mask predicted from the other drawn slices}, every drawn slice
    left out in turn (interior ones interpolated, outermost ones extrapolated); {} with fewer
    than two drawn slices.

    Args:
        image: (n_slices, rows, cols) intensities, canonical.
        mask: (n_slices, rows, cols) bool, the drawn masks (on ``drawn_slices``).
        drawn_slices: the slices the structure was drawn on.
        spacing: (slice, row, col) voxel size in mm.
        empty: slices declared free of the structure.
    """
    from ..metrics import dice

    out: dict[int, float] = {}
    if len(drawn_slices) < 2:
        return out
    shape = image.shape
    for left_out in drawn_slices:
        others = {z: mask[z] for z in drawn_slices if z != left_out}
        result = segment_in_envelope(image, others, spacing, empty, settings, only=left_out)
        guess = result.slice_at(left_out, shape) > 0.5
        out[left_out] = dice(guess[None], mask[None, left_out])
    return out
