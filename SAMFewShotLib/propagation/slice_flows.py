"""Displacement fields between adjacent slices, computed once and reused.

:class:`SliceFlows` registers slice pairs of a normalised stack on demand, inside a crop, and
memoises every field: all chains of one label, all labels sharing a crop, and the
leave-one-slice-out runs of the ``auto`` engine reuse the same registrations.

Pairs known in advance (every pair between two drawn slices; a few pairs ahead of an outward
chain) are registered in parallel by :meth:`SliceFlows.prefetch` on a pool of forked worker
processes (one per core, at most :data:`MAX_WORKERS`); where fork is unavailable (Windows,
macOS defaults) everything runs in the calling process.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..progress import CancelToken
from .slice_registration import SliceRegistrar

#: Worker processes for prefetching registrations.
MAX_WORKERS = 8

# The forked workers' copy of the stack (inherited, never pickled).
_WORKER_STATE: dict = {}


def _worker_register(source: int, target: int, crop: tuple[slice, slice]) -> np.ndarray:
    stack, spacing, registrar = _WORKER_STATE["stack"], _WORKER_STATE["spacing"], _WORKER_STATE["registrar"]
    return registrar.register(stack[target][crop], stack[source][crop], spacing)


def _worker_init(stack: np.ndarray, spacing: tuple[float, float], registrar: SliceRegistrar) -> None:
    # Forked workers inherit the command's SIGTERM handler (raise KeyboardInterrupt), which can
    # leave a worker blocked on the pool's pipe after its parent is gone: a worker just dies on
    # SIGTERM, and leaves Ctrl-C to its parent, which shuts the pool down.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER_STATE.update(stack=stack, spacing=spacing, registrar=registrar)


def default_workers() -> int:
    """Worker processes to use: the cores this process may run on, at most MAX_WORKERS; 1 when
    fork is unavailable."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_WORKERS))


class SliceFlows:
    """Adjacent-slice displacement fields of a stack, memoised.

    Args:
        stack: (n_slices, rows, cols) float32 in [0, 1], the annotated axis first.
        spacing: in-plane (row, col) pixel size in mm.
        registrar: the 2D registration method.
        workers: processes for :meth:`prefetch` (default: :func:`default_workers`); 1 = serial.

    Use as a context manager (or call :meth:`close`) to shut the worker pool down.
    """

    def __init__(
        self, stack: np.ndarray, spacing: tuple[float, float], registrar: SliceRegistrar, workers: int | None = None
    ) -> None:
        self.stack = stack
        self.spacing = spacing
        self.registrar = registrar
        self.workers = default_workers() if workers is None else max(1, workers)
        self._fields: dict[tuple, np.ndarray] = {}
        self._pool: ProcessPoolExecutor | None = None
        self.registrations = 0
        self.cache_hits = 0
        self.seconds = 0.0

    @staticmethod
    def _key(source: int, target: int, crop: tuple[slice, slice]) -> tuple:
        if abs(source - target) != 1:
            raise ValueError(f"Slices {source} and {target} are not neighbours")
        return (source, target, crop[0].start, crop[0].stop, crop[1].start, crop[1].stop)

    def has(self, source: int, target: int, crop: tuple[slice, slice]) -> bool:
        return self._key(source, target, crop) in self._fields

    def step(self, source: int, target: int, crop: tuple[slice, slice]) -> np.ndarray:
        """Displacement (2, crop rows, crop cols) moving a mask from slice ``source`` to its
        neighbour ``target`` (= source +- 1): ``mask_target(x) = mask_source(x + d(x))``."""
        key = self._key(source, target, crop)
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

    def prefetch(
        self, steps: list[tuple[int, int]], crop: tuple[slice, slice], cancel: CancelToken | None = None
    ) -> None:
        """Register the (source, target) pairs not cached yet, in parallel when workers > 1, in
        batches of a few pairs per worker with ``cancel`` polled between batches."""
        missing = list(dict.fromkeys((s, t) for s, t in steps if not self.has(s, t, crop)))
        if self.workers < 2 or len(missing) < 2:
            return
        batch = 4 * self.workers
        for first in range(0, len(missing), batch):
            if cancel is not None:
                cancel.raise_if_cancelled()
            self._register_in_parallel(missing[first : first + batch], crop)

    def _register_in_parallel(self, missing: list[tuple[int, int]], crop: tuple[slice, slice]) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_worker_init,
                initargs=(self.stack, self.spacing, self.registrar),
            )
        start = time.perf_counter()
        sources, targets = zip(*missing)
        fields = self._pool.map(_worker_register, sources, targets, [crop] * len(missing))
        for (source, target), field in zip(missing, fields):
            self._fields[self._key(source, target, crop)] = field
        self.seconds += time.perf_counter() - start
        self.registrations += len(missing)

    def close(self) -> None:
        """Shut the worker pool down (the cache stays usable, serially)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "SliceFlows":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
