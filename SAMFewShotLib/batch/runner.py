"""The local process pool: cases run in worker processes, results stream back as they finish.

Each worker is a fresh process (forked from a fork server that has already imported the batch
code and the model's heavy libraries, :func:`worker_context`) that unpickles the
:class:`~.case_task.CaseTask` once (so the model is loaded once per worker) and then runs one
case at a time. Isolation: a case
that raises becomes a ``failed`` result inside the worker; a case whose worker process dies
(crash, out of memory, killed) is run again once in a new worker, and reported ``failed`` if
its worker dies again. The parent watches the workers' pipes and process sentinels, so it
knows exactly which case was lost. Cancel (the token, Ctrl-C or SIGTERM) kills the workers;
cases already written stay written and are skipped by the next run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Callable

from ..errors import InputError
from ..progress import Cancelled, CancelToken
from .case_task import CaseResult
from .inputs import Case

#: Seconds between checks of the cancel token while waiting for results.
POLL_SECONDS = 0.2
#: Times a case lost with its worker process is run again.
RETRIES = 1


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def limit_threads(threads: int) -> None:
    """Limit the threads of the libraries a case uses (OpenMP/BLAS, ITK, SimpleITK, torch) in
    this process, so that N workers share the cores instead of oversubscribing them."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[name] = str(threads)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    if "itk" in sys.modules:  # loaded before the environment was set (fork server preload)
        sys.modules["itk"].MultiThreaderBase.SetGlobalDefaultNumberOfThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _worker_main(task: Callable[[Case], CaseResult], conn: Connection, threads: int, temp_folder: str) -> None:
    """A worker process: run the cases the parent sends until it sends None. Its temporary
    files go to the parent's ``temp_folder`` (the command's own folder, which the parent removes
    however the worker ends: the fork server's environment may be older than this command)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.environ["TMPDIR"] = temp_folder
    tempfile.tempdir = temp_folder
    limit_threads(threads)
    while True:
        try:
            case = conn.recv()
        except EOFError:  # the parent is gone
            return
        if case is None:
            return
        conn.send(task(case))


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    case: Case | None = None


#: Longest Unix socket path on Linux (``sun_path`` is 108 bytes with its terminating NUL).
UNIX_SOCKET_PATH_MAX = 107
#: What multiprocessing adds to the temporary folder for the fork server's socket:
#: ``/pymp-XXXXXXXX/listener-XXXXXXXX``.
FORKSERVER_SOCKET_SUFFIX = len("/pymp-XXXXXXXX/listener-XXXXXXXX")


def forkserver_socket_fits(temp_folder: str) -> bool:
    """Whether the fork server's socket path under ``temp_folder`` fits a Unix socket address."""
    return len(os.fsencode(temp_folder)) + FORKSERVER_SOCKET_SUFFIX <= UNIX_SOCKET_PATH_MAX


def worker_context(preload: Sequence[str] = ()):
    """The multiprocessing context of the workers: on Linux a fork server that has imported
    this module and ``preload`` (module names) once, so that workers start with them loaded;
    elsewhere fresh ``spawn`` processes. Neither inherits the caller's threads or state.

    The fork server is started once per process: ``preload`` counts on the first call only. It
    listens on a Unix socket in the temporary folder; where that folder's path is too long for a
    socket address (``AF_UNIX path too long``), the workers are spawned instead.
    """
    if (sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods()
            and forkserver_socket_fits(tempfile.gettempdir())):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__, *preload])
        return context
    return multiprocessing.get_context("spawn")


def run_local(
    cases: Sequence[Case],
    task: Callable[[Case], CaseResult],
    *,
    workers: int,
    preload: Sequence[str] = (),
    cancel: CancelToken | None = None,
) -> Iterator[CaseResult]:
    """Run ``task`` on every case in ``workers`` processes; yield each result as it arrives.

    Args:
        cases: the cases; each yields exactly one result.
        task: picklable ``task(case) -> CaseResult`` (a :class:`~.case_task.CaseTask`).
        workers: worker processes (at most one per case is started).
        preload: modules the workers import before their first case (see :func:`worker_context`).
        cancel: polled every :data:`POLL_SECONDS`; when cancelled the workers are killed and
            :class:`~SAMFewShotLib.progress.Cancelled` is raised.
    """
    if workers < 1:
        raise InputError(f"workers must be at least 1, not {workers!r}")
    context = worker_context(preload)
    threads = max(1, available_cores() // workers)
    queue: deque[Case] = deque(cases)
    losses: dict[str, int] = {}
    pool: list[_Worker] = []

    def start() -> _Worker:
        parent, child = context.Pipe()
        process = context.Process(
            target=_worker_main,
            args=(task, child, threads, tempfile.gettempdir()),
            daemon=True,
            name="samfewshot-batch",
        )
        process.start()
        child.close()
        worker = _Worker(process, parent)
        pool.append(worker)
        return worker

    try:
        while queue or any(w.case is not None for w in pool):
            if cancel is not None and cancel.cancelled:
                raise Cancelled("cancelled")
            idle = [w for w in pool if w.case is None]
            while queue and (idle or len(pool) < workers):
                worker = idle.pop() if idle else start()
                worker.case = queue.popleft()
                worker.conn.send(worker.case)
            busy = [w for w in pool if w.case is not None]
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=POLL_SECONDS)
            for worker in busy:
                result = _receive(worker)
                if result is not None:
                    worker.case = None
                    yield result
                elif not worker.process.is_alive():
                    yield from _lost(worker, pool, queue, losses)
    finally:
        _stop(pool)


def _receive(worker: _Worker) -> CaseResult | None:
    """The worker's result when one is waiting, else None (also when the pipe broke)."""
    try:
        return worker.conn.recv() if worker.conn.poll() else None
    except (EOFError, OSError):
        return None


def _lost(worker: _Worker, pool: list[_Worker], queue: deque[Case], losses: dict[str, int]) -> Iterator[CaseResult]:
    """A worker died holding a case: requeue the case once, else report it failed."""
    case = worker.case
    assert case is not None
    pool.remove(worker)
    worker.process.join()
    worker.conn.close()
    losses[case.case_id] = losses.get(case.case_id, 0) + 1
    if losses[case.case_id] <= RETRIES:
        queue.appendleft(case)
        return
    code = worker.process.exitcode
    yield CaseResult(
        case.case_id,
        "failed",
        0.0,
        error=f"the worker process died while running this case ({losses[case.case_id]} times; last exit code {code})",
    )


def _stop(pool: list[_Worker]) -> None:
    """Ask idle workers to leave, kill busy ones, reap all."""
    for worker in pool:
        if worker.case is None:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        else:
            worker.process.kill()
    for worker in pool:
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()
