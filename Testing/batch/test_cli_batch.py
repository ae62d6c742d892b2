"""``samfewshot batch``: the per-case JSON line contract, exit codes, resume, bad input."""

from __future__ import annotations

import _thread
import json
import threading

import psutil
import pytest

import SAMFewShotLib.cli.main as cli
from SAMFewShotLib.batch import models
from Testing.batch.batch_helpers import ThresholdModel, start_markers, wait_for, write_cases

CASE_KEYS = {"case", "status", "seconds", "output", "error"}


@pytest.fixture
def test_model(monkeypatch):
    """--model is replaced by the threshold test model (case tag 2 fails)."""
    monkeypatch.setattr(models, "load_model", lambda model, **options: ThresholdModel(fail_tags=(2,)))


def json_lines(text: str) -> tuple[list[dict], list[dict]]:
    lines = [json.loads(line) for line in text.splitlines()]
    progress = [line for line in lines if set(line) == {"stage", "done", "total"}]
    cases = [line for line in lines if set(line) == CASE_KEYS]
    assert len(progress) + len(cases) == len(lines)
    return progress, cases


def run(args, capsys) -> tuple[int, str, str]:
    code = cli.main(["batch", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_progress_prints_one_case_line_per_case_and_exits_3_when_a_case_failed(tmp_path, capsys, test_model):
    write_cases(tmp_path / "in", 3)
    code, out, err = run(
        [tmp_path / "in", "--model", "m", "-o", tmp_path / "out", "--progress", "json", "--workers", "2"], capsys
    )
    assert code == 3
    progress, cases = json_lines(out)
    assert progress[0] == {"stage": "batch", "done": 0, "total": 3}
    assert progress[-1] == {"stage": "batch", "done": 3, "total": 3}
    by_case = {line["case"]: line for line in cases}
    assert sorted(by_case) == ["case1", "case2", "case3"] and len(cases) == 3
    assert by_case["case1"]["status"] == "done" and by_case["case1"]["error"] is None
    assert by_case["case1"]["output"] == str((tmp_path / "out" / "case1.seg.nrrd").resolve())
    assert by_case["case2"] == {"case": "case2", "status": "failed", "seconds": by_case["case2"]["seconds"],
                                "output": None, "error": "test model refuses case tag 2"}
    assert "3 cases: 2 done, 0 skipped, 1 failed" in err


def test_a_second_run_skips_and_exits_0_when_nothing_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(models, "load_model", lambda model, **options: ThresholdModel())
    write_cases(tmp_path / "in", 2)
    args = [tmp_path / "in", "--model", "m", "-o", tmp_path / "out", "--progress", "json", "--format", "both"]
    assert run(args, capsys)[0] == 0
    code, out, _ = run(args, capsys)
    assert code == 0
    assert [line["status"] for line in json_lines(out)[1]] == ["skipped", "skipped"]
    assert (tmp_path / "out" / "case1.nii.gz").is_file()
    code, out, _ = run(args + ["--force"], capsys)
    assert [line["status"] for line in json_lines(out)[1]] == ["done", "done"]


def test_a_local_dask_scheduler_runs_the_batch_with_a_gpu_per_case_when_cuda_is_asked(tmp_path, capsys, monkeypatch):
    """local:2 workers declare one GPU each and every task asks for one (the test model only
    pretends to use it); a worker without the resource would leave the tasks unscheduled."""
    pytest.importorskip("distributed", reason="the dist extra is not installed")
    monkeypatch.setattr(
        models, "load_model", lambda model, **options: ThresholdModel(fail_tags=(2,), device=options["device"])
    )
    write_cases(tmp_path / "in", 3)
    code, out, _ = run([tmp_path / "in", "--model", "m", "-o", tmp_path / "out", "--progress", "json",
                        "--scheduler", "local:2", "--device", "cuda"], capsys)
    assert code == 3
    assert sorted((line["case"], line["status"]) for line in json_lines(out)[1]) == [
        ("case1", "done"), ("case2", "failed"), ("case3", "done")
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--scheduler", "local:0"], "--scheduler must be local:N"),
        (["--scheduler", "local:2", "--workers", "2"], "--workers sets the local process pool"),
        (["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, test_model, extra, message):
    write_cases(tmp_path / "in", 1)
    code, out, err = run([tmp_path / "in", "--model", "m", "-o", tmp_path / "out", *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "model, extra, message",
    [
        ("missing.zip", [], "no such file or folder"),
        ("head.sfs", [], "give the SAM weights it was trained on with --checkpoint"),
        ("head.sfs", ["--checkpoint", "c", "--annotation", "a"], "--annotation cannot be used with --model"),
        ("case1.nii.gz", [], "as a reference image it needs --annotation"),
        ("case1.nii.gz", ["--annotation", "missing.nii.gz"], "--annotation missing.nii.gz: no such file"),
        ("case1.nii.gz", ["--annotation", "case1.nii.gz", "--fusion", "staple"], "--fusion is for atlas bundles"),
        ("bad.zip", [], "bad.zip"),
    ],
)
def test_bad_models_exit_2_with_one_line(tmp_path, capsys, monkeypatch, model, extra, message):
    write_cases(tmp_path, 1)
    (tmp_path / "head.sfs").write_bytes(b"not a head")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["case1.nii.gz", "--model", model, "-o", "out", *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_kills_the_workers_keeps_finished_cases_and_exits_130(tmp_path, capsys, monkeypatch):
    log = tmp_path / "log"
    log.mkdir()
    monkeypatch.setattr(models, "load_model", lambda model, **options: ThresholdModel(sleep=30.0, log_dir=str(log)))
    write_cases(tmp_path / "in", 2)
    threading.Thread(target=lambda: wait_for(lambda: len(start_markers(log)) == 2) and _thread.interrupt_main()).start()
    code, _, err = run([tmp_path / "in", "--model", "m", "-o", tmp_path / "out", "--progress", "none"], capsys)
    assert code == 130 and "batch cancelled; finished cases are kept" in err
    pids = {int(marker.name.split(".")[1]) for marker in log.glob("*.start")}
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert (tmp_path / "out" / "qc.csv").read_text().splitlines() == [
        "case,status,label,name,volume_ml,components,flags,seconds,output,montage,error"
    ]
