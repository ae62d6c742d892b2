"""Refine a propagated mask against the structure's intensity model, slice by slice.

Chained registration loses area on every step away from a drawn slice (each warp and trim erodes
the soft mask's edge a little), so after 10-20 slices a kidney or the stomach keeps only half of
its area while the tissue around the propagated mask still looks like the structure. Each
propagated slice is therefore re-decided by Bayes' rule (a maximum a posteriori labelling, as in
Bayesian region competition, Zhu and Yuille 1996, without the iterations):

    prior(x)     = sigmoid(signed distance of x to the propagated edge / (band / 3))
    P(in | v, x) = prior * p / (prior * p + (1 - prior) * (1 - p)),   p = P(inside | value)

with ``p`` the intensity model learnt from the drawn slices (``intensity_model.py``). The band
(how far the edge may move, in pixels) is a fraction of the drawn mask's equivalent radius and
grows with the distance to the nearest drawn slice, up to that fraction at ``ramp_mm``: next to
a drawn slice the propagated mask is trusted, far from it the image decides more. Only the
connected parts of the result that overlap the propagated mask are kept (nothing appears
elsewhere in the slice) and holes are filled. Drawn slices and slices without a mask are left
as they are; the cost is two distance transforms per slice of the working grid.

Arrays are (slices, rows, cols) on one grid; spacing (slice, row, col) in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .intensity_model import IntensityModel


@dataclass(frozen=True)
class RefinementSettings:
    """How far the intensity model may move a propagated edge.

    Attributes:
        band_of_radius: the edge may move up to this fraction of the drawn mask's equivalent
            radius (sqrt(area / pi)) ...
        min_band_px: ... and at least this many pixels (thin structures, e.g. the aorta) ...
        ramp_mm: ... reached at this distance (mm along the slice axis) from the nearest drawn
            slice, linearly from 0 on the drawn slice.
        prior_floor: the shape prior is clipped to [floor, 1 - floor], so strong intensity
            evidence can overrule it anywhere inside the band.
        consistency_ramp_px: with an ``inconsistency`` per slice (``refine_slices``; off by
            default), the band is full once the forward-backward round-trip error accumulated
            from the nearest drawn slice (``flow_consistency.py``) reaches this many pixels,
            instead of growing with the distance.
    """

    band_of_radius: float = 0.8
    min_band_px: float = 2.0
    ramp_mm: float = 18.0
    prior_floor: float = 0.02
    consistency_ramp_px: float = 1.0


def base_band(drawn: dict[int, np.ndarray], settings: RefinementSettings) -> float | None:
    """The band (pixels) the edge may move by far from the drawn slices: ``band_of_radius`` times
    the largest drawn mask's equivalent radius, at least ``min_band_px``; None without a drawn voxel."""
    areas = [float(m.sum()) for m in drawn.values()]
    if not areas or max(areas) == 0:
        return None
    return max(settings.min_band_px, settings.band_of_radius * float(np.sqrt(max(areas) / np.pi)))


def band_at(band: float, distance_mm: float, settings: RefinementSettings) -> float:
    """The band at ``distance_mm`` from the nearest drawn slice: growing linearly from 0 to
    ``band`` at ``ramp_mm`` (at least half a pixel)."""
    return max(0.5, band * min(1.0, distance_mm / settings.ramp_mm))


def refine_slice(
    inside: np.ndarray, image: np.ndarray, model: IntensityModel, band: float, settings: RefinementSettings
) -> np.ndarray:
    """One slice's propagated mask ``inside`` (bool) re-decided by ``model`` within ``band``
    pixels (see the module doc): float32, above 0.5 inside the refined mask, at most 0.49 outside."""
    signed = ndimage.distance_transform_edt(inside) - ndimage.distance_transform_edt(~inside)
    prior = 1.0 / (1.0 + np.exp(-signed / (band / 3.0)))
    prior = np.clip(prior, settings.prior_floor, 1 - settings.prior_floor)
    p = model.probability(image)
    posterior = prior * p / (prior * p + (1.0 - prior) * (1.0 - p))
    components, _ = ndimage.label(posterior > 0.5)
    touching = np.unique(components[inside & (components > 0)])
    keep = ndimage.binary_fill_holes(np.isin(components, touching[touching > 0]))
    return np.where(keep, np.maximum(posterior, 0.51), np.minimum(posterior, 0.49)).astype(np.float32)


def refine_slices(
    probability: np.ndarray,
    image: np.ndarray,
    model: IntensityModel,
    drawn: dict[int, np.ndarray],
    slice_mm: float,
    settings: RefinementSettings | None = None,
    inconsistency: np.ndarray | None = None,
) -> np.ndarray:
    """The propagated ``probability`` re-decided by the intensity model (see the module doc).

    Args:
        probability: (n, rows, cols) float32 in [0, 1], the propagated mask (> 0.5 inside).
        image: (n, rows, cols) raw intensities on the same grid (what ``model`` was learnt on).
        model: the structure's intensity model.
        drawn: {slice: (rows, cols) bool mask} of the drawn slices (left as they are); their
            largest area sets the band, their positions the ramp.
        slice_mm: slice spacing in mm.
        settings: band settings (defaults: :class:`RefinementSettings`).
        inconsistency: optional (n,) forward-backward error (pixels) accumulated from the nearest
            drawn slice (``flow_consistency.accumulated_inconsistency``): the band then grows
            with it (full at ``settings.consistency_ramp_px``) instead of with the distance.
            Off by default: measured no better (``flow_consistency.py``).
    Returns:
        (n, rows, cols) float32: above 0.5 where the refined mask is, at most 0.49 elsewhere.
    """
    settings = settings or RefinementSettings()
    if inconsistency is not None and len(inconsistency) != len(probability):
        raise ValueError(f"Inconsistency needs one value per slice ({len(probability)}), not {len(inconsistency)}")
    if probability.shape != image.shape:
        raise ValueError(f"Probability {probability.shape} and image {image.shape} must have the same shape")
    out = np.array(probability, np.float32, copy=True)
    band = base_band(drawn, settings)
    if band is None:
        return out
    inside = probability > 0.5
    for z in np.flatnonzero(inside.reshape(inside.shape[0], -1).any(axis=1)):
        if z in drawn:
            continue
        if inconsistency is not None:
            band_here = max(0.5, band * min(1.0, float(inconsistency[z]) / settings.consistency_ramp_px))
        else:
            band_here = band_at(band, min(abs(int(z) - d) for d in drawn) * slice_mm, settings)
        out[z] = refine_slice(inside[z], image[z], model, band_here, settings)
    return out


def refinement_reliability(
    image: np.ndarray,
    drawn: dict[int, np.ndarray],
    value_range: float,
    slice_mm: float,
    settings: RefinementSettings | None = None,
) -> float | None:
    """How well the refinement keeps a mask that is already right: the mean Dice, over the drawn
    slices, of each drawn mask refined as if it had been propagated there (intensity model learnt
    from the other drawn slices, band of its distance to the nearest other one) against itself.

    1 when the intensity model agrees with the drawn edges; well below 1 when the tissue around
    the structure looks like it (a liver against the heart or muscle): there refinement moves
    correct edges as readily as wrong ones, and ``auto`` must see it beat registration by that
    much (its leave-one-out validation predicts slices twice as far from the drawn ones as the
    result has, where the chain is worse and refinement looks better than it will be).
    None with fewer than two non-empty drawn masks. Arrays as :func:`refine_slices`.
    """
    settings = settings or RefinementSettings()
    filled = {z: m for z, m in drawn.items() if m.any()}
    scores = []
    for z, mask in filled.items():
        others = {s: m for s, m in filled.items() if s != z}
        band = base_band(others, settings)
        if band is None:
            continue
        model = IntensityModel([image[s] for s in others], list(others.values()), value_range)
        distance_mm = min(abs(z - s) for s in others) * slice_mm
        refined = refine_slice(mask, image[z], model, band_at(band, distance_mm, settings), settings) > 0.5
        scores.append(2.0 * float((refined & mask).sum()) / float(refined.sum() + mask.sum()))
    return float(np.mean(scores)) if scores else None
