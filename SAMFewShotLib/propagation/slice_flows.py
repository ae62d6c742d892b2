"""Displacement fields between adjacent slices, computed once and reused.

:class:`SliceFlows` registers slice pairs of a normalised stack on demand, inside a crop, and
memoises every field: all chains of one label, all labels sharing a crop, and the
leave-one-slice-out runs of the ``auto`` engine reuse the same registrations.
"""

from __future__ import annotations

import time

import numpy as np

from .slice_registration import SliceRegistrar


class SliceFlows:
    """Adjacent-slice displacement fields of a stack, memoised.

    Args:
        stack: (n_slices, rows, cols) float32 in [0, 1], the annotated axis first.
        spacing: in-plane (row, col) pixel size in mm.
        registrar: the 2D registration method.
    """

    def __init__(self, stack: np.ndarray, spacing: tuple[float, float], registrar: SliceRegistrar) -> None:
        self.stack = stack
        self.spacing = spacing
        self.registrar = registrar
        self._fields: dict[tuple, np.ndarray] = {}
        self.registrations = 0
        self.cache_hits = 0
        self.seconds = 0.0

    def step(self, source: int, target: int, crop: tuple[slice, slice]) -> np.ndarray:
        """Displacement (2, crop rows, crop cols) moving a mask from slice ``source`` to its
        neighbour ``target`` (= source +- 1): ``mask_target(x) = mask_source(x + d(x))``."""
        if abs(source - target) != 1:
            raise ValueError(f"Slices {source} and {target} are not neighbours")
        key = (source, target, crop[0].start, crop[0].stop, crop[1].start, crop[1].stop)
        field = self._fields.get(key)
        if field is not None:
            self.cache_hits += 1
            return field
        start = time.perf_counter()
        field = self.registrar.register(self.stack[target][crop], self.stack[source][crop], self.spacing)
        self.seconds += time.perf_counter() - start
        self.registrations += 1
        self._fields[key] = field
        return field
