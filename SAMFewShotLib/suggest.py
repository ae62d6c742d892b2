"""Which slices to annotate: SAM-MPA's support-slice selection.

K-center greedy on per-slice feature vectors (cosine distance), initialised with the slice of
highest mean cosine similarity to all others (the most typical slice), then k-centroid
refinement: each slice joins its nearest centre, and each centre moves to the member nearest to
its cluster's mean, until nothing changes. Features are pooled SAM image embeddings when a
model is given, otherwise intensity features of the slices (and the result says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import InputError

#: Refinement rounds at most.
MAX_REFINEMENT_ROUNDS = 50


@dataclass
class Suggestion:
    """slices: suggested slice indices (sorted); features: what they were chosen on."""

    slices: list[int]
    features: str


def _unit_rows(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def select_support_slices(features: np.ndarray, k: int) -> list[int]:
    """Indices (into ``features``' rows) of k representative slices, sorted.

    Args:
        features: (n_slices, ...) feature vectors, one per candidate slice.
        k: how many to pick, 1..n_slices.
    """
    n = len(features)
    if not 1 <= k <= n:
        raise InputError(f"k must be between 1 and the {n} candidate slices, not {k}")
    unit = _unit_rows(features)
    distance = 1.0 - unit @ unit.T
    centres = [int(np.argmax((unit @ unit.T).mean(axis=1)))]
    while len(centres) < k:
        nearest = distance[:, centres].min(axis=1)
        nearest[centres] = -np.inf
        centres.append(int(np.argmax(nearest)))
    for _ in range(MAX_REFINEMENT_ROUNDS):
        members = np.argmin(distance[:, centres], axis=1)
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
    each slice robustly normalised (volume p0.5..p99.5), shrunk to ``size`` x ``size``, plus its
    intensity histogram."""
    low, high = np.percentile(stack, (0.5, 99.5))
    normalised = np.clip((stack.astype(np.float32) - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    zoom = (1.0, size / stack.shape[1], size / stack.shape[2])
    thumbnails = ndimage.zoom(normalised, zoom, order=1).reshape(len(stack), -1)
    histograms = np.stack([np.histogram(s, bins=bins, range=(0.0, 1.0))[0] / s.size for s in normalised])
    return np.concatenate([thumbnails, histograms], axis=1)


def pooled_embeddings(embeddings: np.ndarray, grid: int = 4) -> np.ndarray:
    """(n_slices, C*grid*grid) average-pooled SAM image embeddings of shape (n_slices, C, H, W)."""
    n, channels, height, width = embeddings.shape
    pooled = embeddings.reshape(n, channels, grid, height // grid, grid, width // grid).mean(axis=(3, 5))
    return pooled.reshape(n, -1)


def sam_slice_embeddings(
    volume,
    axis: int,
    candidates: range,
    checkpoint: str,
    model_type: str | None = None,
    progress=None,
    cancel=None,
) -> np.ndarray:
    """(n_candidates, C, 64, 64) SAM image embeddings of the candidate slices along numpy
    ``axis``, through the embedding cache (needs the ``sam`` extra and a checkpoint)."""
    from .progress import no_progress
    from .sam.embedding_cache import EmbeddingCache
    from .sam.encoder import encode_slices
    from .sam.model_loading import load_sam
    from .sam.preprocess import Preprocessing

    progress = progress or no_progress
    sam, loaded = load_sam(checkpoint, model_type=model_type, progress=progress, cancel=cancel)
    encoded = encode_slices(
        sam,
        loaded.sha256,
        volume,
        axis,
        list(candidates),
        Preprocessing.for_volume(volume),
        EmbeddingCache(),
        progress=progress,
        cancel=cancel,
    )
    return np.stack([encoded[z].embedding.numpy() for z in candidates])


def suggest_slices(stack: np.ndarray, k: int, candidates: range, embeddings: np.ndarray | None = None) -> Suggestion:
    """Suggest k slices among ``candidates`` of a (n_slices, rows, cols) stack, on pooled SAM
    ``embeddings`` (n_candidates, C, 64, 64) when given, else on intensity features."""
    if embeddings is not None:
        features, source = pooled_embeddings(embeddings), "pooled SAM image embeddings"
    else:
        features, source = intensity_features(stack[candidates.start : candidates.stop]), (
            "intensity features (no SAM model given)"
        )
    chosen = select_support_slices(features, k)
    return Suggestion(slices=[candidates[i] for i in chosen], features=source)
