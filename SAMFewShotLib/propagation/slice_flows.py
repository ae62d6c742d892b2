"""Displacement fields between adjacent slices, computed once and reused.

:class:`SliceFlows` registers slice pairs of one normalised stack (a structure's working grid, see
``working_grid.py``) on demand, inside a crop, and memoises every field keyed by crop and pair:
all chains of one label, all labels sharing a crop, and the leave-one-slice-out runs of the
``auto`` engine reuse the same registrations.

Pairs known in advance (every pair between two drawn slices; a few pairs ahead of an outward
chain) are registered in parallel by :meth:`SliceFlows.prefetch` on a :class:`RegistrationPool`
of forked worker processes (one per core, at most :data:`MAX_WORKERS`). One pool serves every
stack of a command (all labels, all validation runs): the slices travel to the workers with each
task, so a stack made after the pool started is registered there too. Where fork is unavailable
(Windows, macOS defaults) everything runs in the calling process.
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

# The forked workers' registrar (inherited, never pickled).
_WORKER_STATE: dict = {}


def _worker_register(fixed: np.ndarray, moving: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    return _WORKER_STATE["registrar"].register(fixed, moving, spacing)


def _worker_init(registrar: SliceRegistrar) -> None:
    # Forked workers inherit the command's SIGTERM handler (raise KeyboardInterrupt), which can
    # leave a worker blocked on the pool's pipe after its parent is gone: a worker just dies on
    # SIGTERM, and leaves Ctrl-C to its parent, which shuts the pool down.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER_STATE.update(registrar=registrar)


def default_workers() -> int:
    """Worker processes to use: the cores this process may run on, at most MAX_WORKERS; 1 when
    fork is unavailable."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_WORKERS))


class RegistrationPool:
    """Forked worker processes that register (fixed, moving) slice pairs with one registrar.

    Started on first use, shared by every :class:`SliceFlows` of a command; a context manager
    (or :meth:`close`) shuts it down. ``workers`` < 2 registers nothing in parallel.
    """

    def __init__(self, registrar: SliceRegistrar, workers: int | None = None) -> None:
        self.registrar = registrar
        self.workers = default_workers() if workers is None else max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def register(
        self, pairs: list[tuple[np.ndarray, np.ndarray]], spacing: tuple[float, float]
    ) -> list[np.ndarray]:
        """Displacements of (fixed, moving) pairs, in order, computed on the workers."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_worker_init,
                initargs=(self.registrar,),
            )
        fixed, moving = zip(*pairs)
        return list(self._pool.map(_worker_register, fixed, moving, [spacing] * len(pairs)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> RegistrationPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SliceFlows:
    """Adjacent-slice displacement fields of a stack, memoised.

    Args:
        stack: (n_slices, rows, cols) float32 in [0, 1], the annotated axis first.
        spacing: in-plane (row, col) pixel size in mm.
        registrar: the 2D registration method.
        workers: processes for :meth:`prefetch` when no ``pool`` is given (default:
            :func:`default_workers`); 1 = serial.
        pool: a shared :class:`RegistrationPool` (its registrar is used for prefetching); when
            None, the flows start their own and :meth:`close` shuts it down.

    Counters: ``registrations`` (pairs registered), ``cache_hits``, ``seconds`` (wall seconds
    spent registering). Use as a context manager (or call :meth:`close`).
    """

    def __init__(
        self,
        stack: np.ndarray,
        spacing: tuple[float, float],
        registrar: SliceRegistrar,
        workers: int | None = None,
        pool: RegistrationPool | None = None,
    ) -> None:
        self.stack = stack
        self.spacing = spacing
        self.registrar = registrar
        self._owns_pool = pool is None
        self.pool = pool if pool is not None else RegistrationPool(registrar, workers)
        self.workers = self.pool.workers
        self._fields: dict[tuple, np.ndarray] = {}
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
        start = time.perf_counter()
        pairs = [(self.stack[target][crop], self.stack[source][crop]) for source, target in missing]
        fields = self.pool.register(pairs, self.spacing)
        for (source, target), field in zip(missing, fields):
            self._fields[self._key(source, target, crop)] = field
        self.seconds += time.perf_counter() - start
        self.registrations += len(missing)

    def close(self) -> None:
        """Shut down the worker pool this object started (the cache stays usable, serially)."""
        if self._owns_pool:
            self.pool.close()

    def __enter__(self) -> SliceFlows:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
