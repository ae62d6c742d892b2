"""Cases as dask.distributed tasks on a LocalCluster on 127.0.0.1 with two worker processes:
results streamed, a task lost with its killed worker is run again once, every case finishes
exactly once."""

from __future__ import annotations

import os
import signal
import threading

import pytest

pytest.importorskip("distributed")

import dask
import distributed

from SAMFewShotLib.batch.case_task import CaseTask
from SAMFewShotLib.batch.dask_runner import check_scheduler, run_dask, run_on_client
from SAMFewShotLib.batch.inputs import expand_inputs
from Testing.batch.batch_helpers import ThresholdModel, start_markers, wait_for, write_cases


@pytest.fixture(scope="module")
def client():
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        )
    with cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture
def cases(tmp_path):
    write_cases(tmp_path / "in", 6)
    (tmp_path / "log").mkdir()
    return expand_inputs([str(tmp_path / "in")])


def test_results_stream_back_one_per_case(client, cases, tmp_path):
    task = CaseTask(ThresholdModel(fail_tags=(4,)), str(tmp_path / "out"), run_id="r1")
    results = list(run_on_client(client, cases, task))
    assert sorted(r.case for r in results) == [c.case_id for c in cases]
    assert {r.case: r.status for r in results}["case4"] == "failed"
    assert sum(r.status == "done" for r in results) == 5


def test_killing_a_worker_mid_case_loses_and_duplicates_nothing(client, cases, tmp_path):
    log, out = tmp_path / "log", tmp_path / "out"
    task = CaseTask(ThresholdModel(sleep=1.0, log_dir=str(log)), str(out), run_id="r1")
    killed = []

    def kill_a_running_worker():
        marker = wait_for(lambda: sorted(log.glob("*.start")))[0]
        killed.append(int(marker.name.split(".")[0]))
        os.kill(int(marker.name.split(".")[1]), signal.SIGKILL)

    killer = threading.Thread(target=kill_a_running_worker)
    killer.start()
    results = list(run_on_client(client, cases, task))
    killer.join()
    assert sorted(r.case for r in results) == [c.case_id for c in cases]  # each case reported once
    assert {r.status for r in results} == {"done"}
    counts = start_markers(log)
    assert counts[killed[0]] == 2  # the lost case ran again
    assert sum(counts.values()) == len(cases) + 1
    assert sorted(p.name for p in (out / "records").iterdir()) == [f"{c.case_id}.json" for c in cases]
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_a_case_written_by_a_lost_attempt_is_done_not_written_again(client, cases, tmp_path):
    out = tmp_path / "out"
    task = CaseTask(ThresholdModel(), str(out), run_id="r1")
    first = list(run_on_client(client, cases[:1], task))[0]
    stamp = (out / "case1.seg.nrrd").stat().st_mtime_ns
    again = list(run_on_client(client, cases[:1], CaseTask(ThresholdModel(), str(out), force=True, run_id="r1")))[0]
    assert first.status == again.status == "done"
    assert (out / "case1.seg.nrrd").stat().st_mtime_ns == stamp


def test_a_gpu_run_needs_a_worker_that_declares_a_gpu(client, cases, tmp_path):
    with pytest.raises(ValueError, match="no worker of the scheduler declares a GPU"):
        list(run_on_client(client, cases, CaseTask(ThresholdModel(), str(tmp_path)), gpu=True))


def test_a_scheduler_address_runs_the_cases_there(client, cases, tmp_path):
    task = CaseTask(ThresholdModel(), str(tmp_path / "out"), run_id="r1")
    results = list(run_dask(cases[:2], task, scheduler=client.scheduler.address))
    assert [r.status for r in results] == ["done", "done"]


@pytest.mark.parametrize("bad", ["local:0", "local", "local:x", "http://host:1", "tcp://host", "host:8786"])
def test_bad_scheduler_values_are_refused(bad):
    with pytest.raises(ValueError, match="--scheduler must be local:N"):
        check_scheduler(bad)
