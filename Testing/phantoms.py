"""Synthetic phantoms shared by the tests (deterministic, seeded)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def ellipsoid(center, radii, shape) -> np.ndarray:
    """Bool array of ``shape``: the ellipsoid of ``center`` and ``radii`` (voxels, numpy order)."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii)) <= 1


def render(truth: np.ndarray, seed: int, distractor: np.ndarray | None = None) -> np.ndarray:
    """float32 intensities: structure ~120, background ~40, optional distractor ~80, each with a
    smooth texture, plus Gaussian noise of sd 4."""
    rng = np.random.default_rng(seed)

    def texture(amplitude: float) -> np.ndarray:
        t = ndimage.gaussian_filter(rng.standard_normal(truth.shape), 1.5)
        return amplitude * t / t.std()

    image = 40 + texture(6)
    image[truth] = (120 + texture(10))[truth]
    if distractor is not None:
        distractor = distractor & ~truth
        image[distractor] = (80 + texture(5))[distractor]
    return (image + rng.normal(0, 4, truth.shape)).astype(np.float32)
