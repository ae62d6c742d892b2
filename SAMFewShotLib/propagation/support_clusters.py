"""SAM-MPA's clustering of slices around support (annotated) slices.

Slices are compared by the cosine distance of per-slice feature vectors. Two uses:

- choosing which slices to annotate (:func:`select_support_slices`): K-center greedy, initialised
  with the slice of highest mean cosine similarity to all others (the most typical slice), then
  k-centroid refinement: each slice joins its nearest centre (:func:`assign_to_centres`), and
  each centre moves to the member nearest to its cluster's mean, until nothing changes;
- propagating from the annotated slices (``support_propagation.py``): every slice joins the
  cluster of its nearest annotated slice in feature space (the same assignment step, with the
  annotated slices as fixed centres) and takes its mask from that centre.

Without a SAM model the features are intensity features of the slices (:func:`intensity_features`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError

#: Refinement rounds at most.
MAX_REFINEMENT_ROUNDS = 50


def unit_rows(features: np.ndarray) -> np.ndarray:
    """(n, d) float64: ``features`` (n, ...) flattened per row and scaled to unit length."""
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def assign_to_centres(unit: np.ndarray, centres: list[int]) -> np.ndarray:
    """(n,) int: for every row of ``unit`` (n, d; unit rows), the position in ``centres`` of the
    centre row at the smallest cosine distance (ties: the first centre listed)."""
    return np.argmin(1.0 - unit @ unit[centres].T, axis=1)


def select_support_slices(features: np.ndarray, k: int) -> list[int]:
    """Indices (into ``features``' rows) of k representative slices, sorted.

    Args:
        features: (n_slices, ...) feature vectors, one per candidate slice.
        k: how many to pick, 1..n_slices.
    """
    n = len(features)
    if not 1 <= k <= n:
        raise InputError(f"k must be between 1 and the {n} candidate slices, not {k}")
    unit = unit_rows(features)
    distance = 1.0 - unit @ unit.T
    centres = [int(np.argmax((unit @ unit.T).mean(axis=1)))]
    while len(centres) < k:
        nearest = distance[:, centres].min(axis=1)
        nearest[centres] = -np.inf
        centres.append(int(np.argmax(nearest)))
    for _ in range(MAX_REFINEMENT_ROUNDS):
        members = assign_to_centres(unit, centres)
        moved = []
        for j, centre in enumerate(centres):
            cluster = np.flatnonzero(members == j)
            if cluster.size == 0:
                moved.append(centre)
                continue
            mean = unit[cluster].mean(axis=0)
            moved.append(int(cluster[np.argmax(unit[cluster] @ mean)]))
        if moved == centres or len(set(moved)) < k:
            break
        centres = moved
    return sorted(centres)


def intensity_features(stack: np.ndarray, size: int = 16, bins: int = 32) -> np.ndarray:
    """(n_slices, size*size + bins) features of a (n_slices, rows, cols) stack without a model:
    each slice robustly normalised (stack p0.5..p99.5), shrunk to ``size`` x ``size``, plus its
    intensity histogram."""
    low, high = np.percentile(stack, (0.5, 99.5))
    normalised = np.clip((stack.astype(np.float32) - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    zoom = (1.0, size / stack.shape[1], size / stack.shape[2])
    thumbnails = ndimage.zoom(normalised, zoom, order=1).reshape(len(stack), -1)
    histograms = np.stack([np.histogram(s, bins=bins, range=(0.0, 1.0))[0] / s.size for s in normalised])
    return np.concatenate([thumbnails, histograms], axis=1)


def support_clusters(stack: np.ndarray, centres: list[int]) -> dict[int, int]:
    """{slice: its centre} for every slice of a (n_slices, rows, cols) stack: the centre (one of
    ``centres``, slice indices) nearest in cosine distance of :func:`intensity_features`; a
    centre is its own centre."""
    if not centres:
        raise ValueError("At least one centre slice is needed")
    members = assign_to_centres(unit_rows(intensity_features(stack)), list(centres))
    assigned = {z: int(centres[j]) for z, j in enumerate(members)}
    assigned.update({c: c for c in centres})
    return assigned
