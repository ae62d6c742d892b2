"""A child process whose output is read by threads and polled from a GUI timer.

The pattern of SlicerMONAIAuto3DSeg / SlicerTotalSegmentator without Qt: :meth:`ProcessRunner.start`
launches the child with both streams piped, one reader thread per stream puts lines on a
:class:`queue.Queue`, and the Slicer module calls :meth:`ProcessRunner.poll` from a ``qt.QTimer``
(never blocking the GUI). :meth:`ProcessRunner.cancel` kills the whole process tree (the CLI's
worker processes included) without psutil, which Slicer 5.6 and 5.8 do not ship: on POSIX through
the child's process group plus the descendants listed by ``/proc`` (Linux) or ``ps``; on Windows
with ``taskkill /T`` (politely first, then ``/F``).

Typical use::

    runner = ProcessRunner()
    runner.start(propagate_command(sys.executable, ...))
    # every 100 ms:
    for event in runner.poll():
        ...                               # or read runner.tracker.status_text()
    if not runner.running:
        if runner.returncode == 0: ...    # read the report and the output
        else: show(runner.error_message())
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Callable

from .progress_lines import ProgressEvent, ProgressTracker, parse_progress_line

_STDOUT, _STDERR = "stdout", "stderr"
_IS_WINDOWS = sys.platform == "win32"


def _read_lines(stream: IO[str], name: str, lines: queue.Queue[tuple[str, str | None]]) -> None:
    """Reader thread: every line of ``stream`` (without its newline), then ``None`` at EOF."""
    try:
        for line in stream:
            lines.put((name, line.rstrip("\r\n")))
    except (OSError, ValueError):  # stream closed under us (cancel): same as EOF
        pass
    finally:
        lines.put((name, None))


class ProcessRunner:
    """One child process at a time, with progress parsing and process-tree cancellation.

    Args:
        clock: monotonic seconds (injectable for tests).
        max_lines: how many stderr and non-progress stdout lines are kept (the latest).
        exit_grace_seconds: after the child exits, how long to wait for its pipes to close
            before declaring it finished anyway (a detached grandchild may hold them open).

    Attributes:
        tracker: the :class:`ProgressTracker` fed by :meth:`poll`.
        stderr_lines: the child's stderr lines (latest ``max_lines``).
        stdout_lines: stdout lines that are not progress events (latest ``max_lines``).
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_lines: int = 1000, exit_grace_seconds: float = 2.0
    ) -> None:
        self._clock = clock
        self._max_lines = max_lines
        self._exit_grace = exit_grace_seconds
        self._process: subprocess.Popen | None = None
        self.tracker = ProgressTracker(clock)
        self._reset()

    def _reset(self) -> None:
        self._lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._open_streams = 0
        self._finished = False
        self._cancelled = False
        self._start_time: float | None = None
        self._end_time: float | None = None
        self._exit_seen: float | None = None
        self.stderr_lines: collections.deque[str] = collections.deque(maxlen=self._max_lines)
        self.stdout_lines: collections.deque[str] = collections.deque(maxlen=self._max_lines)
        self._unread_stdout: list[str] = []

    # Starting --------------------------------------------------------------------------------
    def start(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None
    ) -> None:
        """Launch ``argv`` (no shell) in its own process group / session.

        Args:
            argv: the command (e.g. :func:`~SAMFewShotLib.slicer_support.commands.propagate_command`).
            env: the child's environment (default: this process's); ``PYTHONUNBUFFERED=1`` and
                ``PYTHONIOENCODING=utf-8`` are added unless set, so lines arrive as written and
                decode as UTF-8 on every platform.
            cwd: the child's working folder (default: this process's).

        Raises:
            RuntimeError: a child started by this runner is still running.
            OSError: the executable cannot be started (e.g. FileNotFoundError).
        """
        if self._process is not None and self.running:
            raise RuntimeError(f"A process is already running (pid {self._process.pid}); cancel it first")
        argv = [os.fspath(a) for a in argv]
        if not argv:
            raise ValueError("The command must not be empty")
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        child_env.setdefault("PYTHONIOENCODING", "utf-8")
        options: dict = {}
        if _IS_WINDOWS:
            # Own process group (so the tree can be told apart) and no console window popping up.
            # (getattr: subprocess defines these only on Windows, and the type check runs elsewhere too.)
            options["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(
                subprocess, "CREATE_NO_WINDOW", 0
            )
        else:
            options["start_new_session"] = True  # own session and process group: os.killpg reaches the tree
        self._process = None  # a failed start leaves the runner idle, not "running" the last child
        self._reset()
        self.tracker.restart()
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            env=child_env,
            cwd=cwd,
            **options,
        )
        self._start_time = self._clock()
        for name, stream in ((_STDOUT, self._process.stdout), (_STDERR, self._process.stderr)):
            thread = threading.Thread(
                target=_read_lines, args=(stream, name, self._lines), name=f"samfewshot-{name}-reader", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._open_streams = 2

    # Polling ---------------------------------------------------------------------------------
    def poll(self) -> list[ProgressEvent]:
        """Drain the queued output without blocking; returns the new progress events.

        Progress lines update :attr:`tracker`; other stdout lines go to :attr:`stdout_lines`,
        stderr lines to :attr:`stderr_lines`. When the child has exited and both pipes are
        drained, :attr:`running` turns False and :attr:`returncode` is set.
        """
        events: list[ProgressEvent] = []
        if self._process is None:
            return events
        while True:
            try:
                name, line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._open_streams -= 1
            elif name == _STDERR:
                self.stderr_lines.append(line)
            else:
                event = parse_progress_line(line)
                if event is None:
                    self.stdout_lines.append(line)
                    self._unread_stdout.append(line)
                else:
                    self.tracker.update(event)
                    events.append(event)
        self._check_finished()
        return events

    def take_stdout_lines(self) -> list[str]:
        """The stdout lines that are not progress events received by :meth:`poll` since the last
        call, oldest first (every one of them, unlike the bounded :attr:`stdout_lines`): how the
        batch's per-case lines reach the Slicer module while the child runs."""
        lines, self._unread_stdout = self._unread_stdout, []
        return lines

    def _check_finished(self) -> None:
        if self._finished or self._process is None or self._process.poll() is None:
            return
        now = self._clock()
        if self._exit_seen is None:
            self._exit_seen = now
        if self._open_streams <= 0 or now - self._exit_seen >= self._exit_grace:
            self._finished = True
            self._end_time = now
            for stream in (self._process.stdout, self._process.stderr):
                if stream is not None and self._open_streams <= 0:
                    stream.close()

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the child has exited and :meth:`poll` drained its output."""
        return self._process is not None and not self._finished

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """The child's exit code once :attr:`running` is False (negative: killed by that signal
        on POSIX); None before."""
        return self._process.returncode if self._process is not None and self._finished else None

    @property
    def cancelled(self) -> bool:
        """True when the last child was stopped by :meth:`cancel`."""
        return self._cancelled

    @property
    def elapsed_seconds(self) -> float:
        """Seconds since :meth:`start`, frozen when the child finished; 0 before any start."""
        if self._start_time is None:
            return 0.0
        return (self._end_time if self._end_time is not None else self._clock()) - self._start_time

    def error_message(self) -> str | None:
        """The child's last non-empty stderr line (our CLI prints exactly one on bad input), or None."""
        for line in reversed(self.stderr_lines):
            if line.strip():
                return line.strip()
        return None

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> int:
        """Poll until the child finished (for scripts and tests; the GUI uses a timer).

        Raises:
            RuntimeError: nothing was started.
            TimeoutError: still running after ``timeout`` seconds (the child is left running).
        """
        if self._process is None:
            raise RuntimeError("No process was started")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.poll()
            if not self.running:
                return self.returncode  # type: ignore[return-value]
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"Process {self._process.pid} still running after {timeout} s")
            time.sleep(interval)

    # Cancelling ------------------------------------------------------------------------------
    def cancel(self, grace_seconds: float = 2.0, timeout: float = 10.0) -> int | None:
        """Stop the child and every process it started, then wait for them.

        The tree is asked to stop first (SIGTERM on POSIX: our CLI exits 130 and writes nothing;
        ``taskkill /T`` on Windows), and whatever is still alive after ``grace_seconds`` is killed
        (SIGKILL; ``taskkill /T /F``). No psutil is needed.

        Returns:
            The child's return code (None when nothing was started): 130 when our CLI stopped
            cleanly, a negative signal number on POSIX when it was terminated or killed.
        """
        if self._process is None or self._finished:
            return self.returncode
        process = self._process
        self._cancelled = process.poll() is None  # an exited child is not "cancelled"; its strays still go
        tree = [] if _IS_WINDOWS else descendant_pids(process.pid)
        self._signal_tree(process, tree, kill=False)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and _tree_alive(process, tree):
            time.sleep(0.02)
        if _tree_alive(process, tree):
            if not _IS_WINDOWS:
                tree += [pid for pid in descendant_pids(process.pid) if pid not in tree]
            self._signal_tree(process, tree, kill=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        join_deadline = time.monotonic() + 1.0  # a stray that escaped the tree may hold a pipe open
        for thread in self._threads:
            thread.join(timeout=max(0.0, join_deadline - time.monotonic()))
        self.poll()
        if not self._finished and process.poll() is not None:
            self._finished, self._end_time = True, self._clock()
        return self.returncode

    def _signal_tree(self, process: subprocess.Popen, tree: list, kill: bool) -> None:
        """Terminate (or kill) the child, its process group and its listed descendants."""
        if _IS_WINDOWS:
            if process.poll() is None:
                subprocess.run(
                    taskkill_command(process.pid, force=kill),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
                    check=False,
                )
                if kill and process.poll() is None:
                    process.kill()
            return
        how = signal.SIGKILL if kill else signal.SIGTERM
        for pid in tree:  # descendants that left the group (their own session) included
            try:
                os.kill(pid, how)
            except (ProcessLookupError, PermissionError):
                pass
        try:  # the child leads its own process group (start_new_session); the group outlives it
            os.killpg(process.pid, how)
        except (ProcessLookupError, PermissionError):
            pass


def taskkill_command(pid: int, force: bool) -> list:
    """argv of Windows' ``taskkill`` stopping ``pid`` and every process it started (``/T``);
    ``force`` adds ``/F`` (a console child without a window only stops forcefully)."""
    return ["taskkill", "/T"] + (["/F"] if force else []) + ["/PID", str(int(pid))]


def proc_stat_fields(proc: str = "/proc") -> Iterator[tuple[int, list]]:
    """(pid, fields) of every process in Linux's /proc: the fields of ``/proc/PID/stat`` after the
    command name (state, parent pid, process group, ...), as bytes; processes gone meanwhile are
    skipped."""
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "stat"), "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):  # gone meanwhile
            continue
        yield int(entry), fields


def parent_map_from_proc(proc: str = "/proc") -> dict:
    """{pid: parent pid} of every process, read from Linux's /proc (live and zombie)."""
    return {pid: int(fields[1]) for pid, fields in proc_stat_fields(proc) if len(fields) > 1}


def parent_map_from_ps() -> dict:
    """{pid: parent pid} from ``ps -A -o pid= -o ppid=`` (macOS and other POSIX systems)."""
    try:
        output = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True,
                                check=False, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    parents = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            parents[int(fields[0])] = int(fields[1])
    return parents


def descendants_from_parents(pid: int, parents: Mapping[int, int]) -> list:
    """Every descendant of ``pid`` in a {pid: parent pid} map, nearest first."""
    children: dict = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, queue_ = [], list(children.get(pid, []))
    while queue_:
        current = queue_.pop(0)
        if current in found or current == pid:
            continue
        found.append(current)
        queue_.extend(children.get(current, []))
    return found


def descendant_pids(pid: int) -> list:
    """Pids of every process ``pid`` started, directly or not (POSIX; [] on Windows, where
    ``taskkill /T`` walks the tree itself)."""
    if _IS_WINDOWS:
        return []
    if sys.platform.startswith("linux") and os.path.isdir("/proc"):
        return descendants_from_parents(pid, parent_map_from_proc())
    return descendants_from_parents(pid, parent_map_from_ps())


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs and is not a zombie (POSIX)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = os.path.join("/proc", str(pid), "stat")
    if os.path.exists(stat):
        try:
            with open(stat, "rb") as handle:
                return handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
        except (OSError, IndexError):
            return False
    return True


def _tree_alive(process: subprocess.Popen, tree: list) -> bool:
    """True while the child, a listed descendant or (POSIX) a member of the child's process
    group is still there (the group, and so its id, lives as long as one member does, even
    after the child itself was reaped)."""
    if process.poll() is None:
        return True
    if _IS_WINDOWS:
        return False
    return any(_pid_alive(pid) for pid in tree) or _group_alive(process.pid)

def _group_alive(pgid: int) -> bool:
    """True while process group ``pgid`` has a member that is not a zombie.

    On Linux /proc is read, so zombies that nobody reaps yet (a container's init may never reap
    them) do not count; elsewhere ``killpg(pgid, 0)`` tells whether the group has any member."""
    proc = "/proc"
    if sys.platform.startswith("linux") and os.path.isdir(proc):
        return any(
            len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X")
            for _, fields in proc_stat_fields(proc)
        )
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
