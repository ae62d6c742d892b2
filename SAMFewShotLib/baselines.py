"""The honest baseline of slice propagation: copy the nearest drawn mask onto every other slice.

Every learned engine's test compares against it (issue 17): an engine that does not beat
copying what the user drew onto the neighbouring slices has learnt nothing from the image.
"""

from __future__ import annotations

import numpy as np

from .annotation import SparseAnnotation
from .volume import label_dtype


def copy_nearest_drawn(annotation: SparseAnnotation) -> np.ndarray:
    """Each label's drawn mask copied from its nearest drawn slice onto every slice.

    Args:
        annotation: the sparse annotation (labels on the image grid, annotated ``axis``).

    Returns:
        (z, y, x) label array on the annotation's grid (numpy order; the smallest unsigned dtype
        holding the label values). Every slice along ``annotation.axis`` gets, per label in
        ``annotation.label_values`` order, the mask of that label's nearest drawn slice (the
        lower one on a tie); a voxel already taken by an earlier label keeps it. Drawn slices
        keep their own masks. Slices declared empty for a label get nothing of that label.
    """
    values = annotation.label_values
    out = np.zeros(annotation.canonical_shape, label_dtype(int(max(values)) if values else 1))
    for value in values:
        drawn = np.asarray(annotation.drawn_slices(value))
        if drawn.size == 0:
            continue
        masks = annotation.mask(value)
        empty = set(annotation.empty_slices.get(value, ()))
        for z in range(annotation.n_slices):
            if z in empty:
                continue
            nearest = int(drawn[np.argmin(np.abs(drawn - z))])
            out[z][masks[nearest] & (out[z] == 0)] = value
    return np.ascontiguousarray(annotation.from_canonical(out))
