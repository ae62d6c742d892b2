"""Intensity model of a structure learnt from its annotated slices.

Histograms of the voxel values inside the drawn masks (foreground) and in a band around them
(background) give ``P(inside | value)`` with equal priors. The register engine uses it to trim a
propagated mask where the tissue no longer looks like the structure, which is also how it
notices that the structure has ended.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

#: Histogram bin width as a fraction of the image's robust value range (p0.5..p99.5); about
#: 10 HU on a CT whose range spans air to bone.
BIN_FRACTION = 1.0 / 220.0
#: Gaussian smoothing of the histograms, in bins.
SMOOTHING_BINS = 1.5
#: Density floor: values never seen in either histogram get P(inside) = 0.5 (no evidence).
DENSITY_FLOOR = 1e-3


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of scores: P(positive > negative) + P(tie) / 2."""
    if positive.size == 0 or negative.size == 0:
        return 0.5
    ranks = stats.rankdata(np.concatenate([positive, negative]))
    rank_sum = ranks[: positive.size].sum()
    return float((rank_sum - positive.size * (positive.size + 1) / 2) / (positive.size * negative.size))


class IntensityModel:
    """P(inside | value) from foreground and background histograms of annotated slices.

    ``separability`` is the AUC of P(inside) between the drawn voxels and their band: near 0.5
    the intensities say nothing about the structure, and nothing that relies on them (trimming,
    growing, the stop rule) can be trusted.

    Args:
        slices: (rows, cols) images of the annotated slices.
        masks: the matching (rows, cols) bool masks (at least one non-empty).
        value_range: the image's robust value range (e.g. p99.5 - p0.5), which sets the bin width.
        band_px: width in pixels of the background band around each mask.
    """

    def __init__(
        self, slices: list[np.ndarray], masks: list[np.ndarray], value_range: float, band_px: int = 4
    ) -> None:
        foreground, background = [], []
        for image, mask in zip(slices, masks):
            if not mask.any():
                continue
            band = ndimage.binary_dilation(mask, iterations=band_px) & ~mask
            foreground.append(image[mask])
            background.append(image[band])
        if not foreground:
            raise ValueError("An intensity model needs at least one non-empty mask")
        fg, bg = np.concatenate(foreground).astype(np.float64), np.concatenate(background).astype(np.float64)
        both = np.concatenate([fg, bg])
        width = max(float(value_range), 1e-6) * BIN_FRACTION
        low = float(both.min())
        self.n_bins = int(np.floor((float(both.max()) - low) / width)) + 1
        self.edges = low + width * np.arange(self.n_bins + 1)
        hist_fg = ndimage.gaussian_filter1d(np.histogram(fg, self.edges)[0] / fg.size, SMOOTHING_BINS)
        hist_bg = ndimage.gaussian_filter1d(np.histogram(bg, self.edges)[0] / max(bg.size, 1), SMOOTHING_BINS)
        self.p_inside = (hist_fg + DENSITY_FLOOR) / (hist_fg + hist_bg + 2 * DENSITY_FLOOR)
        self.separability = _auc(self.probability(fg), self.probability(bg))

    def probability(self, values: np.ndarray) -> np.ndarray:
        """P(inside | value) for an array of values (0.5 outside the learnt value range)."""
        index = np.searchsorted(self.edges, values, side="right") - 1
        outside = (index < 0) | (index >= self.n_bins)
        p = self.p_inside[np.clip(index, 0, self.n_bins - 1)]
        return np.where(outside, 0.5, p).astype(np.float32)

    def trim(self, soft_mask: np.ndarray, image: np.ndarray, prior_cap: float = 0.9) -> np.ndarray:
        """Bayesian trim of a propagated soft mask: never grows it.

        The warped mask (capped at ``prior_cap``) is the prior, the intensity model the
        likelihood; the result is ``min(mask, posterior)``, shape and dtype of ``soft_mask``.
        """
        prior = np.clip(soft_mask, 0.0, prior_cap)
        p = self.probability(image)
        posterior = prior * p / (prior * p + (1.0 - prior) * (1.0 - p) + 1e-6)
        return np.minimum(soft_mask, posterior).astype(np.float32)

    def grow(self, soft_mask: np.ndarray, image: np.ndarray, threshold: float, pixels: int = 1) -> np.ndarray:
        """Add the ring of ``pixels`` around the mask where P(inside | value) >= ``threshold``."""
        inside = soft_mask > 0.5
        ring = ndimage.binary_dilation(inside, iterations=pixels) & ~inside
        add = ring & (self.probability(image) >= threshold)
        return np.where(add, np.float32(0.75), soft_mask).astype(np.float32)
