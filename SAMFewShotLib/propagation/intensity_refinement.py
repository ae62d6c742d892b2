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
    """

    band_of_radius: float = 0.8
    min_band_px: float = 2.0
    ramp_mm: float = 18.0
    prior_floor: float = 0.02


def refine_slices(
    probability: np.ndarray,
    image: np.ndarray,
    model: IntensityModel,
    drawn: dict[int, np.ndarray],
    slice_mm: float,
    settings: RefinementSettings | None = None,
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
    Returns:
        (n, rows, cols) float32: above 0.5 where the refined mask is, at most 0.49 elsewhere.
    """
    settings = settings or RefinementSettings()
    if probability.shape != image.shape:
        raise ValueError(f"Probability {probability.shape} and image {image.shape} must have the same shape")
    out = np.array(probability, np.float32, copy=True)
    areas = [float(m.sum()) for m in drawn.values()]
    if not areas or max(areas) == 0:
        return out
    band = max(settings.min_band_px, settings.band_of_radius * float(np.sqrt(max(areas) / np.pi)))
    inside = probability > 0.5
    for z in np.flatnonzero(inside.reshape(inside.shape[0], -1).any(axis=1)):
        if z in drawn:
            continue
        distance_mm = min(abs(int(z) - d) for d in drawn) * slice_mm
        band_here = max(0.5, band * min(1.0, distance_mm / settings.ramp_mm))
        signed = ndimage.distance_transform_edt(inside[z]) - ndimage.distance_transform_edt(~inside[z])
        prior = 1.0 / (1.0 + np.exp(-signed / (band_here / 3.0)))
        prior = np.clip(prior, settings.prior_floor, 1 - settings.prior_floor)
        p = model.probability(image[z])
        posterior = prior * p / (prior * p + (1.0 - prior) * (1.0 - p))
        components, _ = ndimage.label(posterior > 0.5)
        touching = np.unique(components[inside[z] & (components > 0)])
        keep = ndimage.binary_fill_holes(np.isin(components, touching[touching > 0]))
        out[z] = np.where(keep, np.maximum(posterior, 0.51), np.minimum(posterior, 0.49))
    return out
