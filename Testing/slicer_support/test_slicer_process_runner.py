"""Tests of slicer_support/process_runner.py with real child processes: a real ``samfewshot
propagate`` on a tiny phantom, a bad-input run, and cancelling a child that has a grandchild.

The cancel tests probe pids with ``os.kill(pid, 0)`` and ``/proc`` (POSIX; on Windows that call
would kill the process), so they skip there.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from Testing.phantoms import ellipsoid, render
from SAMFewShotLib.slicer_support import process_runner
from SAMFewShotLib.slicer_support.commands import propagate_command
from SAMFewShotLib.slicer_support.process_runner import ProcessRunner
from SAMFewShotLib.slicer_support.progress_lines import read_report
from SAMFewShotLib.slicer_support.weights_commands import present_checkpoints, weights_list_command
from SAMFewShotLib.volume import LabelVolume, Segment, Volume
from SAMFewShotLib.volume_io import read_labels, write_labels, write_volume

POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="probes pids with os.kill(pid, 0) and /proc")
TIMEOUT = 60
SHAPE = (14, 20, 22)  # (z, y, x)


@pytest.fixture(scope="module")
def tiny_case(tmp_path_factory) -> dict:
    """image.nrrd and drawn.seg.nrrd (a ball labelled 1 on three axial slices), rotated grid."""
    folder = tmp_path_factory.mktemp("runner_case")
    truth = ellipsoid((7, 10, 11), (5, 7, 8), SHAPE)
    geometry = dict(spacing=(1.0, 1.0, 2.0), origin=(-3.0, 5.0, 20.0), direction=(0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    drawn = np.zeros(SHAPE, np.uint8)
    for z in (4, 7, 10):
        drawn[z][truth[z]] = 1
    write_volume(Volume(render(truth, seed=3), **geometry), folder / "image.nrrd")
    write_labels(LabelVolume(Volume(drawn, **geometry), (Segment(1, "ball"),)), folder / "drawn.seg.nrrd")
    return {"dir": folder, "image": folder / "image.nrrd", "annotation": folder / "drawn.seg.nrrd", "truth": truth}


def run_to_end(runner: ProcessRunner, timeout: float = TIMEOUT) -> list:
    """Poll like the Slicer module's QTimer until the child finished; all events seen."""
    events, deadline = [], time.monotonic() + timeout
    while runner.running:
        assert time.monotonic() < deadline, f"child still running after {timeout} s: {list(runner.stderr_lines)}"
        events += runner.poll()
        time.sleep(0.02)
    return events


def test_propagate_run_reports_progress_and_succeeds(tiny_case, tmp_path):
    output, report = tmp_path / "out.seg.nrrd", tmp_path / "report.json"
    argv = propagate_command(
        sys.executable, tiny_case["image"], tiny_case["annotation"], output, report, engine="register"
    )
    runner = ProcessRunner()
    assert not runner.running and runner.returncode is None and runner.poll() == []
    runner.start(argv)
    assert runner.running and runner.pid is not None and runner.returncode is None
    events = run_to_end(runner)
    assert runner.returncode == 0, list(runner.stderr_lines)
    assert not runner.cancelled and runner.error_message() is None
    assert {e.stage for e in events} == {"register: label 1", "register: labels"}
    slices = [e for e in events if e.stage == "register: label 1"]
    assert len(slices) > 1 and slices[-1].done == slices[-1].total > 0
    assert runner.tracker.latest("register: label 1") == slices[-1]
    last = events[-1]
    assert runner.tracker.current_stage == last.stage and runner.tracker.fraction() == 1.0
    assert runner.tracker.status_text().startswith(f"{last.stage} - {last.total}/{last.total} (")
    assert 0 < runner.elapsed_seconds < TIMEOUT
    frozen = runner.elapsed_seconds
    time.sleep(0.05)
    assert runner.elapsed_seconds == frozen  # stops counting when the child finished
    labels = read_labels(output)
    assert [s.name for s in labels.segments] == ["ball"]
    found = labels.array == 1
    dice = 2 * np.count_nonzero(found & tiny_case["truth"]) / (found.sum() + tiny_case["truth"].sum())
    assert dice > 0.8
    assert read_report(report)["engine"] == "register"


def test_bad_input_exits_2_with_one_error_line(tiny_case, tmp_path):
    missing = tmp_path / "no such image.nrrd"
    argv = propagate_command(sys.executable, missing, tiny_case["annotation"], tmp_path / "o.nii.gz", tmp_path / "r.json")
    runner = ProcessRunner()
    runner.start(argv)
    assert run_to_end(runner) == []
    assert runner.returncode == 2
    assert len(runner.stderr_lines) == 1
    assert runner.error_message() == runner.stderr_lines[0].strip()
    assert runner.error_message().startswith("samfewshot: error: ") and str(missing) in runner.error_message()
    assert not (tmp_path / "o.nii.gz").exists() and not (tmp_path / "r.json").exists()


def test_weights_list_output_is_read_from_stdout(tmp_path):
    runner = ProcessRunner()
    runner.start(weights_list_command(sys.executable), env={**os.environ, "SAMFEWSHOT_HOME": str(tmp_path)})
    run_to_end(runner)
    assert runner.returncode == 0, list(runner.stderr_lines)
    assert present_checkpoints("\n".join(runner.stdout_lines)) == []


def test_start_refuses_a_second_child_and_missing_executables(tmp_path):
    runner = ProcessRunner()
    with pytest.raises(RuntimeError, match="No process"):
        runner.wait()
    runner.start([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(RuntimeError, match="already running"):
            runner.start([sys.executable, "-c", "pass"])
        with pytest.raises(TimeoutError):
            runner.wait(timeout=0.1)
    finally:
        runner.cancel(grace_seconds=0.5)
    assert not runner.running and runner.cancelled
    with pytest.raises(FileNotFoundError):
        runner.start([str(tmp_path / "no-such-python")])
    assert not runner.running and runner.returncode is None and runner.poll() == []


def test_child_env_cwd_and_mixed_output(tmp_path):
    script = textwrap.dedent(
        """
        import json, os, sys
        print("plain text line")
        print(json.dumps({"stage": "a", "done": 1, "total": 2}))
        print("warning: something", file=sys.stderr)
        print(json.dumps({"stage": "a", "done": 2, "total": 2}))
        print(os.environ["SAMFEWSHOT_TEST"], os.getcwd(), os.environ["PYTHONUNBUFFERED"])
        print("last words", file=sys.stderr)
        sys.exit(3)
        """
    )
    runner = ProcessRunner()
    runner.start([sys.executable, "-c", script], env={**os.environ, "SAMFEWSHOT_TEST": "é"}, cwd=tmp_path)
    assert runner.wait(timeout=TIMEOUT) == 3
    assert [(e.stage, e.done) for e in [runner.tracker.latest()]] == [("a", 2)]
    assert list(runner.stdout_lines) == ["plain text line", f"é {tmp_path} 1"]
    assert list(runner.stderr_lines) == ["warning: something", "last words"]
    assert runner.error_message() == "last words"


def test_take_stdout_lines_returns_each_non_progress_line_once(tmp_path):
    """The batch's per-case lines reach the module while the child runs, each exactly once."""
    go = tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import json, os, time
        print(json.dumps({{"case": "a", "status": "done"}}), flush=True)
        print(json.dumps({{"stage": "batch", "done": 1, "total": 2}}), flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        print(json.dumps({{"case": "b", "status": "failed"}}), flush=True)
        """
    )
    runner = ProcessRunner()
    runner.start([sys.executable, "-c", script])
    taken, deadline = [], time.monotonic() + TIMEOUT
    while not taken:
        assert runner.running and time.monotonic() < deadline
        runner.poll()
        taken += runner.take_stdout_lines()
        time.sleep(0.02)
    assert [json.loads(line)["case"] for line in taken] == ["a"]
    go.touch()
    run_to_end(runner)
    assert [json.loads(line)["case"] for line in runner.take_stdout_lines()] == ["b"]
    assert runner.take_stdout_lines() == []
    assert runner.tracker.latest().done == 1 and len(runner.stdout_lines) == 2


# Cancelling ---------------------------------------------------------------------------------------
def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True
    except OSError:
        return False


def wait_gone(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def child_with_grandchild(ignore_sigterm: bool, detach_grandchild: bool = False) -> list[str]:
    """argv of a child that starts a sleeping grandchild, prints its pid as JSON, then prints a
    progress line every 50 ms for a minute."""
    script = textwrap.dedent(
        f"""
        import json, signal, subprocess, sys, time
        if {ignore_sigterm}:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the grandchild through exec
        grandchild = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session={detach_grandchild}
        )
        print(json.dumps({{"grandchild": grandchild.pid}}), flush=True)
        for done in range(1200):
            print(json.dumps({{"stage": "work", "done": done, "total": 1200}}), flush=True)
            time.sleep(0.05)
        """
    )
    return [sys.executable, "-c", script]


def start_and_find_grandchild(runner: ProcessRunner, argv: list[str]) -> int:
    runner.start(argv)
    deadline = time.monotonic() + TIMEOUT
    events = []
    while not (events and runner.stdout_lines):
        assert runner.running and time.monotonic() < deadline, list(runner.stderr_lines)
        events += runner.poll()
        time.sleep(0.02)
    return json.loads(runner.stdout_lines[0])["grandchild"]


@POSIX_ONLY
@pytest.mark.parametrize("ignore_sigterm", [False, True], ids=["terminates", "ignores-sigterm"])
def test_cancel_kills_the_whole_tree(ignore_sigterm):
    runner = ProcessRunner()
    grandchild = start_and_find_grandchild(runner, child_with_grandchild(ignore_sigterm))
    child = runner.pid
    assert not gone(grandchild) and not gone(child)
    started = time.monotonic()
    returncode = runner.cancel(grace_seconds=0.5)
    assert time.monotonic() - started < 5.0
    assert returncode is not None and returncode != 0 and returncode == runner.returncode
    assert runner.cancelled and not runner.running
    assert wait_gone(child) and wait_gone(grandchild)
    assert runner.tracker.current_stage == "work"


@POSIX_ONLY
def test_cancel_kills_a_grandchild_that_left_the_process_group_without_psutil():
    runner = ProcessRunner()
    grandchild = start_and_find_grandchild(runner, child_with_grandchild(False, detach_grandchild=True))
    runner.cancel(grace_seconds=0.5)
    assert wait_gone(grandchild)


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes of process group ``pgid`` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="lists the process group through /proc")
@pytest.mark.parametrize("delay", [0.3, None], ids=["during-imports", "at-the-first-progress-event"])
def test_cancel_propagate_stops_every_process_and_writes_nothing(tiny_case, tmp_path, delay):
    """The real CLI, cancelled early (imports) or while its forked registration workers run.

    The exit code is 130 when the CLI's SIGTERM handler ran, but may also be -15 (SIGTERM before
    the handler was installed), -2 (CPython exits via SIGINT when the KeyboardInterrupt raised by
    that handler hit C-level code during an import) or -9 (still alive after the grace period), so
    only "not 0" is asserted; the Slicer module reads ``runner.cancelled``."""
    output, report = tmp_path / "out.nii.gz", tmp_path / "r.json"
    runner = ProcessRunner()
    runner.start(propagate_command(sys.executable, tiny_case["image"], tiny_case["annotation"], output, report))
    if delay is not None:
        time.sleep(delay)
    else:  # the engine runs (auto: ~3 s more on this case)
        deadline = time.monotonic() + TIMEOUT
        while runner.running and not runner.poll() and time.monotonic() < deadline:
            time.sleep(0.01)
    runner.poll()
    if not runner.running:
        pytest.skip("the run finished before it could be cancelled (a very fast machine)")
    returncode = runner.cancel(grace_seconds=2.0)
    assert runner.cancelled and returncode not in (0, None)
    assert wait_gone(runner.pid) and group_members(runner.pid) == []
    assert not output.exists() and not report.exists() and list(tmp_path.iterdir()) == []


@POSIX_ONLY
def test_finishes_when_a_stray_grandchild_keeps_the_pipes_open():
    """A child that exits 0 while a process it started still holds stdout/stderr (what an orphaned
    worker does): ``running`` turns False ``exit_grace_seconds`` after the exit, not never."""
    script = textwrap.dedent(
        """
        import json, subprocess, sys
        stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(json.dumps({"stray": stray.pid}), flush=True)
        """
    )
    runner = ProcessRunner(exit_grace_seconds=0.3)
    runner.start([sys.executable, "-c", script])
    try:
        started = time.monotonic()
        assert runner.wait(timeout=10) == 0
        assert time.monotonic() - started < 5.0
    finally:
        stray = None
        if runner.stdout_lines:
            stray = json.loads(runner.stdout_lines[0])["stray"]
            os.kill(stray, signal.SIGKILL)
    assert stray is not None and wait_gone(stray)


def test_cancel_without_a_child_does_nothing():
    runner = ProcessRunner()
    assert runner.cancel() is None and not runner.cancelled
    runner.start([sys.executable, "-c", "pass"])
    assert runner.wait(timeout=TIMEOUT) == 0
    assert runner.cancel() == 0 and not runner.cancelled


def test_process_runner_needs_no_psutil():
    """Slicer 5.6 and 5.8 do not ship psutil: the runner must not import it."""
    source = Path(process_runner.__file__).read_text()
    assert "psutil" not in source.replace("without psutil", "").replace("No psutil", "").replace("do not ship psutil", "")
    assert not hasattr(process_runner, "psutil")


def test_taskkill_asks_first_then_forces_the_whole_tree():
    assert process_runner.taskkill_command(123, force=False) == ["taskkill", "/T", "/PID", "123"]
    assert process_runner.taskkill_command(123, force=True) == ["taskkill", "/T", "/F", "/PID", "123"]


def test_descendants_follow_the_parent_map():
    parents = {10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 21: 20}
    assert process_runner.descendants_from_parents(10, parents) == [11, 13, 12]
    assert process_runner.descendants_from_parents(21, parents) == []


def test_windows_cancel_uses_taskkill_without_psutil(monkeypatch):
    """On Windows the tree is stopped with taskkill /T (polite), then /T /F; no psutil."""
    calls = []

    class FakeProcess:
        pid = 4242
        returncode = None
        stdout = stderr = None

        def poll(self):
            return self.returncode

        def kill(self):
            calls.append("kill")
            self.returncode = 1

        def wait(self, timeout=None):
            return self.returncode

    def fake_run(argv, **kwargs):
        calls.append(argv)
        if "/F" in argv:
            process.returncode = 1
        return None

    process = FakeProcess()
    monkeypatch.setattr(process_runner, "_IS_WINDOWS", True)
    monkeypatch.setattr(process_runner.subprocess, "run", fake_run)
    monkeypatch.setattr(process_runner.subprocess, "CREATE_NO_WINDOW", 0x08000000, raising=False)
    runner = ProcessRunner()
    runner._process = process
    runner.cancel(grace_seconds=0.05, timeout=0.1)
    assert calls[0] == ["taskkill", "/T", "/PID", "4242"]
    assert ["taskkill", "/T", "/F", "/PID", "4242"] in calls
    assert runner.cancelled
