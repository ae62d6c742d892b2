"""SAM-MPA's support-driven propagation: each slice takes its mask from its cluster's centre.

The drawn slices are the centres; every other slice joins the centre nearest in feature space
(:func:`~SAMFewShotLib.propagation.support_clusters.support_clusters`, the k-centroid assignment
step) and the centre's mask is carried to it, either

- chained: warped slice to slice through the adjacent-slice registrations from the centre to
  the slice (passing drawn slices of other clusters without resetting), or
- direct: warped by one registration of the centre slice onto the slice, as the paper registers
  each exemplar to the images of its cluster. Direct registrations are memoised per
  :class:`SliceFlows` (so ``auto``'s validation runs reuse them) and computed on its worker pool.

Everything works in the canonical orientation, (n_slices, rows, cols), annotated axis first.
"""

from __future__ import annotations

import time
import weakref

import numpy as np

from ..progress import CancelToken
from .slice_flows import SliceFlows
from .slice_registration import warp
from .support_clusters import support_clusters
from .support_names import SUPPORT_MODES

# {flows: {(centre, slice, crop bounds): displacement}}: direct registrations, per stack.
_DIRECT_FIELDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _crop_key(crop: tuple[slice, slice]) -> tuple:
    return (crop[0].start, crop[0].stop, crop[1].start, crop[1].stop)


def direct_fields(
    flows: SliceFlows, pairs: list[tuple[int, int]], crop: tuple[slice, slice], cancel: CancelToken | None = None
) -> dict[tuple[int, int], np.ndarray]:
    """{(centre, slice): (2, crop rows, crop cols) displacement} moving a mask from ``centre`` to
    ``slice`` in one registration (``flows.registrar``, fixed = the slice, moving = the centre),
    memoised per ``flows``; missing pairs are registered on ``flows.pool`` when it has workers."""
    cache = _DIRECT_FIELDS.setdefault(flows, {})
    key = _crop_key(crop)
    missing = [pair for pair in dict.fromkeys(pairs) if (*pair, key) not in cache]
    batch = max(1, 4 * flows.workers)
    for first in range(0, len(missing), batch):
        if cancel is not None:
            cancel.raise_if_cancelled()
        chunk = missing[first : first + batch]
        images = [(flows.stack[z][crop], flows.stack[c][crop]) for c, z in chunk]
        start = time.perf_counter()
        if flows.workers >= 2 and len(chunk) >= 2:
            fields = flows.pool.register(images, flows.spacing)
        else:
            fields = [flows.registrar.register(fixed, moving, flows.spacing) for fixed, moving in images]
        flows.seconds += time.perf_counter() - start
        flows.registrations += len(chunk)
        cache.update({(*pair, key): field for pair, field in zip(chunk, fields)})
    return {pair: cache[(*pair, key)] for pair in pairs}


def chained_masks(
    drawn: dict[int, np.ndarray],
    targets: dict[int, int],
    flows: SliceFlows,
    crop: tuple[slice, slice],
    cancel: CancelToken | None = None,
) -> dict[int, np.ndarray]:
    """{slice: float32 mask} for ``targets`` ({slice: its centre}): the centre's drawn mask warped
    slice to slice through the adjacent-slice registrations of ``flows`` up to the slice."""
    out: dict[int, np.ndarray] = {}
    for centre in sorted(set(targets.values())):
        mine = [z for z, c in targets.items() if c == centre]
        for direction in (-1, 1):
            ahead = sorted((z for z in mine if (z - centre) * direction > 0), key=lambda z: abs(z - centre))
            if not ahead:
                continue
            steps = [(z - direction, z) for z in range(centre + direction, ahead[-1] + direction, direction)]
            flows.prefetch(steps, crop, cancel)
            wanted = set(ahead)
            mask = drawn[centre].astype(np.float32)
            for source, z in steps:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                mask = warp(mask, flows.step(source, z, crop))
                if z in wanted:
                    out[z] = mask
    return out


def centre_masks(
    image: np.ndarray,
    drawn: dict[int, np.ndarray],
    slices: list[int],
    flows: SliceFlows,
    crop: tuple[slice, slice],
    mode: str,
    barriers: set[int] | None = None,
    cancel: CancelToken | None = None,
    assigned: dict[int, int] | None = None,
) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """Masks of ``slices`` taken from their cluster centres (see the module docstring).

    Args:
        image: (n, rows, cols) raw intensities; the assignment uses the ``crop`` of every slice.
        drawn: {centre slice: (crop rows, crop cols) mask}; at least one.
        slices: the slices to fill (not drawn ones).
        flows: the stack's registrations.
        crop: in-plane crop the masks live in.
        mode: "kcentroid" (chained) or "kcentroid-direct".
        barriers: slices a mask never crosses (declared empty): a slice whose centre lies behind
            one is left out of the result.
        assigned: {slice: centre} already computed (default: :func:`support_clusters`).

    Returns:
        ({slice: float32 mask (crop rows, crop cols)}, {slice: its centre} for every slice of
        the stack).
    """
    if mode not in SUPPORT_MODES[1:]:
        raise ValueError(f"Support mode must be one of {', '.join(SUPPORT_MODES[1:])}, not {mode!r}")
    if assigned is None:
        assigned = support_clusters(image[:, crop[0], crop[1]], sorted(drawn))
    blocked = sorted(barriers or ())
    targets = {
        z: assigned[z]
        for z in slices
        if z not in drawn and not any(min(z, assigned[z]) < b < max(z, assigned[z]) for b in blocked)
    }
    if mode == "kcentroid":
        return chained_masks(drawn, targets, flows, crop, cancel), assigned
    fields = direct_fields(flows, [(c, z) for z, c in targets.items()], crop, cancel)
    masks = {z: warp(drawn[c].astype(np.float32), fields[(c, z)]) for z, c in targets.items()}
    return masks, assigned
