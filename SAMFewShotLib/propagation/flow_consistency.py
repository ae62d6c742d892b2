"""Forward-backward (inverse) consistency of the slice registrations, as a confidence.

A slice pair registered both ways should give inverse fields: moving a point from slice ``t`` to
its neighbour ``s`` with ``d_ts`` and back with ``d_st`` should bring it home. The round-trip
error, on ``t``'s grid (``SliceFlows`` convention: ``mask_t(x) = mask_s(x + d_st(x))``),

    e(x) = d_st(x) + d_ts(x + d_st(x))

is 0 where the registration is self-consistent and large where it is not (occlusion, a structure
that appears or vanishes, a registration that latched onto the wrong edge). Along a chain the
errors at the propagated mask's edge add up: :func:`accumulated_inconsistency` gives each slice
the sum from its nearest drawn slice, in pixels, a confidence that grows with what the chain has
actually gone through instead of with the number of slices.

Measured on the abdominal CT (README "Accuracy", ``benchmarks/bench_flow_consistency.py``): DIS
fields are nearly consistent (0.05-0.4 pixels per pair at the mask's edge) while chains still
lose half the area of a kidney, so the inconsistency does not see that loss; used instead of the
distance ramp of the intensity refinement (``intensity_refinement.refine_slices``, its
``inconsistency`` argument) it lowered the mean Dice at k = 1, 3 and 10, and as a per-slice
confidence it ranks slices better than the chain's own confidence at k = 1 and 3 but worse at
k = 10. It is therefore an option, off by default.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from .slice_flows import SliceFlows
from .slice_registration import warp

#: Half-width (pixels) of the band around a mask's edge where the round-trip error is averaged.
EDGE_BAND_PX = 2


def round_trip_error(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(rows, cols) float32 round-trip error in pixels on the target slice's grid.

    Args:
        forward: (2, rows, cols) displacement ``d_st`` bringing a mask from slice s to slice t
            (``SliceFlows.step(s, t)``, defined on t's grid).
        backward: (2, rows, cols) displacement ``d_ts`` from t back to s (defined on s's grid).
    """
    if forward.shape != backward.shape or forward.ndim != 3 or forward.shape[0] != 2:
        raise ValueError(f"Fields must both be (2, rows, cols), not {forward.shape} and {backward.shape}")
    back = np.stack([warp(backward[0], forward), warp(backward[1], forward)])
    error = forward + back
    return np.hypot(error[0], error[1]).astype(np.float32)


def edge_band(mask: np.ndarray, half_width: int = EDGE_BAND_PX) -> np.ndarray:
    """The pixels within ``half_width`` of a bool mask's edge (both sides)."""
    return ndimage.binary_dilation(mask, iterations=half_width) & ~ndimage.binary_erosion(mask, iterations=half_width)


def step_inconsistency(
    flows: SliceFlows, probability: np.ndarray, crop: tuple[slice, slice], slices: Iterable[int] | None = None
) -> np.ndarray:
    """(n,) float: per slice z, the mean round-trip error (pixels) at the edge of ``probability[z]
    > 0.5`` of the registrations between z and its neighbours (mean over the neighbours), 0 where
    the slice holds no mask. Registers the reverse pairs it needs (memoised by ``flows``).

    Args:
        flows: the stack's registrations.
        probability: (n, crop rows, crop cols) propagated probability.
        crop: the in-plane crop the fields are computed in.
        slices: the slices to score (default: every slice holding a mask).
    """
    n = probability.shape[0]
    occupied = np.flatnonzero((probability > 0.5).reshape(n, -1).any(axis=1))
    chosen = [int(z) for z in (occupied if slices is None else slices) if 0 <= z < n]
    pairs = [(t, z) for z in chosen for t in (z - 1, z + 1) if 0 <= t < n]
    flows.prefetch(pairs + [(z, t) for t, z in pairs], crop)
    out = np.zeros(n, np.float64)
    for z in chosen:
        band = edge_band(probability[z] > 0.5)
        if not band.any():
            continue
        errors = [round_trip_error(flows.step(t, z, crop), flows.step(z, t, crop))[band].mean()
                  for t in (z - 1, z + 1) if 0 <= t < n]
        out[z] = float(np.mean(errors))
    return out


def accumulated_inconsistency(steps: np.ndarray, drawn: Iterable[int]) -> np.ndarray:
    """(n,) float: per slice, the least sum of ``steps`` (:func:`step_inconsistency`) over the
    slices a chain from a drawn slice crosses to reach it (the drawn slice itself excluded, the
    slice included); 0 on drawn slices. ``drawn`` must not be empty."""
    steps = np.asarray(steps, np.float64)
    n = steps.size
    drawn = sorted({int(z) for z in drawn})
    if not drawn:
        raise ValueError("At least one drawn slice is needed")
    cumulative = np.concatenate([[0.0], np.cumsum(steps)])  # cumulative[i] = sum(steps[:i])
    out = np.full(n, np.inf)
    for s in drawn:
        index = np.arange(n)
        up = cumulative[index + 1] - cumulative[s + 1]  # slices s+1..z
        down = cumulative[s] - cumulative[index]  # slices z..s-1
        out = np.minimum(out, np.where(index >= s, up, down))
    out[drawn] = 0.0
    return out
