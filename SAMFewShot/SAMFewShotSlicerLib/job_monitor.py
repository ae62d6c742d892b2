"""JobMonitor: one running ``samfewshot`` child shown in a progress bar, a status label and an
elapsed-time label, polled from a ``qt.QTimer`` so that Slicer never blocks.

This is the SlicerMONAIAuto3DSeg pattern: the child's output is read by threads into a queue
(``SAMFewShotLib.slicer_support.process_runner``) and the timer drains it on the GUI thread.
Cancel stops the child's whole process tree; the scene is not touched by a cancelled job. While
a job runs, only the progress widgets whose text or value changed are updated, and the rest of
the GUI (``onChanged``) only when a job starts or ends.
"""

import logging

import qt

import slicer
from SAMFewShotLib.slicer_support import progress_lines

#: How often a running child is polled (milliseconds).
POLL_INTERVAL_MS = 100


class JobMonitor:
    """Runs at most one job of the module's logic at a time and shows its progress.

    Args:
        jobs: the ChildJobs (pollJob, cancelJob) of the logic.
        progressBar, statusLabel, elapsedLabel: where the progress is shown.
        onFinished: called with the job when it ended by itself (success or failure, not
            cancel); it reads the result and may raise (the error is shown in a dialog).
        onChanged: called whenever a job starts or stops (buttons follow the running state).
        onOutput: optional, called with the job after every poll (the batch's per-case lines).
    """

    def __init__(self, jobs, progressBar, statusLabel, elapsedLabel, onFinished, onChanged, onOutput=None) -> None:
        self.jobs = jobs
        self.progressBar = progressBar
        self.statusLabel = statusLabel
        self.elapsedLabel = elapsedLabel
        self._onFinished = onFinished
        self._onChanged = onChanged
        self._onOutput = onOutput
        self._job = None
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onTimeout)
        self.progressBar.setRange(0, 100)
        self.progressBar.value = 0

    @property
    def job(self):
        """The running job, or None."""
        return self._job

    @property
    def running(self) -> bool:
        return self._job is not None

    def start(self, job) -> None:
        """Show ``job`` (already started by the logic) until it ends."""
        if self._job is not None:
            self.jobs.cancelJob(job)
            raise RuntimeError(f"{self._job.kind.capitalize()} is still running: wait for it or cancel it first")
        self._job = job
        self.progressBar.value = 0
        self.showProgress(job)
        self._timer.start()
        self._onChanged()

    def showProgress(self, job) -> None:
        """Progress bar, ``"<kind>: <stage> - done/total (m:ss elapsed)"`` and elapsed time;
        a widget is touched only when what it shows changed."""
        runner = job.runner
        value = int(round(100 * runner.tracker.fraction()))
        if self.progressBar.value != value:
            self.progressBar.value = value
        status = f"{job.kind}: {runner.tracker.status_text()}"
        if self.statusLabel.text != status:
            self.statusLabel.text = status
        elapsed = progress_lines.format_elapsed(runner.elapsed_seconds)
        if self.elapsedLabel.text != elapsed:
            self.elapsedLabel.text = elapsed

    def onTimeout(self) -> None:
        job = self._job
        if job is None:
            self._timer.stop()
            return
        with slicer.util.tryWithErrorDisplay(f"{job.kind.capitalize()} failed."):
            try:
                self.jobs.pollJob(job)
                if self._onOutput is not None:
                    self._onOutput(job)
                self.showProgress(job)
                if job.running:
                    return
                self._timer.stop()
                self._job = None
                self.progressBar.value = 100 if job.runner.returncode == 0 else 0
                try:
                    self._onFinished(job)
                except Exception as error:
                    self.statusLabel.text = f"{job.kind.capitalize()} failed: {error}"
                    raise
            finally:
                if self._job is None:  # ended (or failed to poll): the rest of the GUI follows once
                    self._timer.stop()
                    self._onChanged()

    def cancel(self) -> None:
        """Stop the running job and every process it started; nothing in the scene changes."""
        job, self._job = self._job, None
        self._timer.stop()
        if job is not None:
            self.jobs.cancelJob(job)
            self.statusLabel.text = f"{job.kind.capitalize()} cancelled; nothing was changed."
        self.progressBar.value = 0
        self._onChanged()

    def cancelQuietly(self) -> None:
        """Stop a running job without dialogs or GUI updates (module cleanup, scene close)."""
        self._timer.stop()
        job, self._job = self._job, None
        if job is not None:
            try:
                self.jobs.cancelJob(job)
            except Exception as error:  # cleanup must not fail
                logging.warning(f"SAMFewShot: could not cancel the running {job.kind}: {error}")
