"""Cases as dask.distributed tasks (``--scheduler local:N`` or ``tcp://HOST:PORT``).

One task per case (a :class:`~.case_task.CaseTask` call), submitted with ``retries=1``; results
stream back with ``as_completed`` as cases finish. ``local:N`` starts a ``LocalCluster`` on
127.0.0.1 with N single-threaded worker processes whose scheduler reschedules a task lost with
its worker once (``distributed.scheduler.allowed-failures = 1``); a task lost twice comes back
as ``KilledWorker`` and the case is reported failed. On an existing scheduler
(``tcp://HOST:PORT``) its own ``allowed-failures`` applies, and inputs and DIR must be on a
file system the workers share. With ``--device cuda`` every task asks for ``resources={"GPU":
1}``: local workers declare one GPU each; remote workers must be started with
``--resources GPU=1``.

A case is never written twice: a task re-run after its worker died finds the record the lost
attempt wrote (same run id) and returns ``done`` without writing.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ..errors import InputError
from ..progress import Cancelled, CancelToken
from .case_task import CaseResult, CaseTask, one_line
from .inputs import Case
from .runner import POLL_SECONDS, RETRIES, available_cores, limit_threads, worker_context

_LOCAL = re.compile(r"^local:(\d+)$")
_ADDRESS = re.compile(r"^(tcp|tls)://[^\s/:]+:\d+$")


def check_scheduler(scheduler: str) -> None:
    """InputError unless ``scheduler`` is ``local:N`` (N >= 1) or ``tcp://HOST:PORT``."""
    match = _LOCAL.match(scheduler)
    if (match and int(match.group(1)) >= 1) or _ADDRESS.match(scheduler):
        return
    raise InputError(f"--scheduler must be local:N (N >= 1) or tcp://HOST:PORT, not {scheduler!r}")


@contextmanager
def connect(scheduler: str, *, gpu: bool = False, preload: Sequence[str] = ()):
    """A dask Client on ``scheduler``; for ``local:N`` a LocalCluster it closes on exit, whose
    workers (on Linux) are forked from a fork server that has imported ``preload`` once, as
    the local pool's are (:func:`~.runner.worker_context`); a worker restarted after a loss
    is spawned afresh.

    Yields:
        (client, threads): the client and the threads per case (None: leave the workers' own).
    """
    check_scheduler(scheduler)
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("--scheduler needs dask.distributed: pip install 'samfewshot[dist]'") from None
    match = _LOCAL.match(scheduler)
    if match is None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise InputError(f"--scheduler {scheduler}: cannot connect ({one_line(error)})") from None
        with client:
            yield client, None
        return
    workers = int(match.group(1))
    settings: dict[str, int | str] = {"distributed.scheduler.allowed-failures": RETRIES}
    forkserver = worker_context().get_start_method() == "forkserver"
    if forkserver:
        settings["distributed.worker.multiprocessing-method"] = "forkserver"
    with dask.config.set(settings):
        if forkserver:
            from distributed.utils import get_mp_context

            get_mp_context()  # dask sets its fork server preload once; ours (with distributed) replaces it
            worker_context(("distributed", *preload))
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # no fixed port: several batches may run at once
            resources={"GPU": 1} if gpu else None,
            silence_logs=logging.ERROR,  # a worker slow to close is killed with a warning: not the user's concern
        )
    with cluster, Client(cluster) as client:
        yield client, max(1, available_cores() // workers)


def _run_case(task: CaseTask, case: Case, threads: int | None) -> CaseResult:
    if threads is not None:
        limit_threads(threads)
    return task(case)


def run_on_client(
    client,
    cases: Sequence[Case],
    task: CaseTask,
    *,
    threads: int | None = None,
    gpu: bool = False,
    cancel: CancelToken | None = None,
) -> Iterator[CaseResult]:
    """Submit one task per case to ``client``; yield each case's result as it completes.

    Args:
        client: a connected ``distributed.Client``.
        threads: library threads per case (see :func:`~.runner.limit_threads`); None: unchanged.
        gpu: ask for ``resources={"GPU": 1}`` per task (InputError when no worker declares one).
        cancel: polled every :data:`~.runner.POLL_SECONDS`; when cancelled, the tasks are
            cancelled and :class:`~SAMFewShotLib.progress.Cancelled` is raised.
    """
    from distributed import as_completed

    if gpu and not any(w.get("resources", {}).get("GPU") for w in client.scheduler_info()["workers"].values()):
        raise InputError("--device cuda: no worker of the scheduler declares a GPU (start them with --resources GPU=1)")
    run = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            _run_case, task, case, threads,
            key=f"samfewshot-batch-{case.case_id}-{run}", retries=RETRIES, pure=False,
            resources={"GPU": 1} if gpu else None,
        ): case
        for case in cases
    }
    pending = as_completed(list(futures))
    try:
        while not pending.is_empty():
            if cancel is not None and cancel.cancelled:
                raise Cancelled("cancelled")
            if not pending.has_ready():
                time.sleep(POLL_SECONDS)
                continue
            for future in pending.next_batch(block=False):
                yield _result(future, futures[future])
    finally:
        client.cancel(list(futures))


def _result(future, case: Case) -> CaseResult:
    if future.status == "finished":
        return future.result()
    error = future.exception()
    if type(error).__name__ == "KilledWorker":
        message = f"the worker running this case died {RETRIES + 1} times"
    else:
        message = one_line(error)
    return CaseResult(case.case_id, "failed", 0.0, error=message)


def run_dask(
    cases: Sequence[Case], task: CaseTask, *, scheduler: str, gpu: bool = False, cancel: CancelToken | None = None
) -> Iterator[CaseResult]:
    """:func:`run_on_client` on the client of :func:`connect` (``local:N`` or an address)."""
    with connect(scheduler, gpu=gpu, preload=task.model.preload) as (client, threads):
        yield from run_on_client(client, cases, task, threads=threads, gpu=gpu, cancel=cancel)
