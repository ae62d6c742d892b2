"""Which slices to annotate: SAM-MPA's support-slice selection.

The clustering itself lives in ``propagation/support_clusters.py`` (the propagation assigns
slices to annotated centres with the same step). K-center greedy on per-slice feature vectors
(cosine distance), initialised with the slice of highest mean cosine similarity to all others
(the most typical slice), then k-centroid refinement: each slice joins its nearest centre, and
each centre moves to the member nearest to its cluster's mean, until nothing changes. Features
are pooled SAM image embeddings when a model is given, otherwise intensity features of the
slices (and the result says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .propagation.support_clusters import (
    MAX_REFINEMENT_ROUNDS,
    intensity_features,
    select_support_slices,
)

__all__ = [
    "MAX_REFINEMENT_ROUNDS",
    "Suggestion",
    "intensity_features",
    "pooled_embeddings",
    "sam_slice_embeddings",
    "select_support_slices",
    "suggest_slices",
]


@dataclass
class Suggestion:
    """slices: suggested slice indices (sorted); features: what they were chosen on."""

    slices: list[int]
    features: str


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
