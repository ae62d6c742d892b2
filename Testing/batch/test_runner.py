"""The local process pool: a case lost with its worker is run again once, a case that kills its
worker twice fails alone, cancel kills the workers."""

from __future__ import annotations

import os
import signal
import threading

import psutil
import pytest

from SAMFewShotLib.batch.case_task import CaseTask
from SAMFewShotLib.batch.inputs import expand_inputs
from SAMFewShotLib.batch.runner import run_local
from SAMFewShotLib.progress import Cancelled, CancelToken
from Testing.batch.batch_helpers import ThresholdModel, start_markers, wait_for, write_cases


@pytest.fixture
def cases(tmp_path):
    write_cases(tmp_path / "in", 3)
    (tmp_path / "log").mkdir()
    return expand_inputs([str(tmp_path / "in")])


def test_a_case_whose_worker_is_killed_mid_case_runs_again_and_finishes_once(cases, tmp_path):
    log = tmp_path / "log"
    task = CaseTask(ThresholdModel(sleep=1.0, log_dir=str(log)), str(tmp_path / "out"), run_id="r1")

    def kill_first_started():
        marker = wait_for(lambda: sorted(log.glob("*.start")))[0]
        os.kill(int(marker.name.split(".")[1]), signal.SIGKILL)
        return int(marker.name.split(".")[0])

    killed = []
    killer = threading.Thread(target=lambda: killed.append(kill_first_started()))
    killer.start()
    results = list(run_local(cases, task, workers=2))
    killer.join()
    assert sorted(r.case for r in results) == ["case1", "case2", "case3"]
    assert {r.status for r in results} == {"done"}
    counts = start_markers(log)
    assert counts[killed[0]] == 2 and sum(counts.values()) == 4
    records = sorted(p.name for p in (tmp_path / "out" / "records").iterdir())
    assert records == ["case1.json", "case2.json", "case3.json"]


def test_a_case_that_kills_its_worker_twice_fails_and_the_others_finish(cases, tmp_path):
    log = tmp_path / "log"
    task = CaseTask(ThresholdModel(log_dir=str(log), crash_tags=(2,)), str(tmp_path / "out"), run_id="r1")
    results = {r.case: r for r in run_local(cases, task, workers=2)}
    assert results["case2"].status == "failed"
    assert "worker process died while running this case (2 times; last exit code 7)" in results["case2"].error
    assert results["case1"].status == results["case3"].status == "done"
    assert start_markers(log)[2] == 2


def test_cancel_kills_the_workers_and_raises(cases, tmp_path):
    task = CaseTask(ThresholdModel(sleep=30.0, log_dir=str(tmp_path / "log")), str(tmp_path / "out"), run_id="r1")
    cancel = CancelToken()
    stream = run_local(cases, task, workers=2, cancel=cancel)
    threading.Timer(
        0.1, lambda: wait_for(lambda: len(start_markers(tmp_path / "log")) == 2) and cancel.cancel()
    ).start()
    with pytest.raises(Cancelled):
        next(stream)
    worker_pids = {int(marker.name.split(".")[1]) for marker in (tmp_path / "log").glob("*.start")}
    assert len(worker_pids) == 2
    assert not [
        pid for pid in worker_pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]


def test_workers_must_be_positive(cases, tmp_path):
    with pytest.raises(ValueError, match="workers must be at least 1"):
        list(run_local(cases, CaseTask(ThresholdModel(), str(tmp_path)), workers=0))


def test_a_temporary_folder_too_long_for_the_fork_servers_socket_spawns_the_workers(
    cases, tmp_path, monkeypatch
):
    """multiprocessing puts the fork server's Unix socket in the temporary folder; a long TMPDIR
    made every batch fail with 'AF_UNIX path too long'. Now the workers are spawned instead."""
    import tempfile

    from SAMFewShotLib.batch.runner import UNIX_SOCKET_PATH_MAX, forkserver_socket_fits, worker_context

    long_folder = tmp_path / ("t" * max(1, UNIX_SOCKET_PATH_MAX - len(str(tmp_path)) - 10))
    long_folder.mkdir()
    assert not forkserver_socket_fits(str(long_folder))
    assert forkserver_socket_fits("/tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(long_folder))
    assert worker_context().get_start_method() == "spawn"
    task = CaseTask(ThresholdModel(), str(tmp_path / "out"), run_id="r1")
    results = list(run_local(cases, task, workers=1))
    assert {r.status for r in results} == {"done"}
