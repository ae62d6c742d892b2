"""``samfewshot`` child processes of the SAMFewShot logic.

Every long step (propagate, suggest, weights, atlas, batch) runs ``PythonSlicer -m SAMFewShotLib
... --progress json`` in a child process with its own temporary folder. ``start*`` methods of the
logic return a :class:`SAMFewShotJob`; the GUI polls it from a timer (JobMonitor), scripts and
tests block with :meth:`ChildJobs.waitForJob`; ``finish*`` methods read the result inside
:meth:`ChildJobs.finishedJob`, which turns a failed child into an exception and removes the
folder; :meth:`ChildJobs.cancelJob` stops the whole process tree.
"""

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional

import slicer
from SAMFewShotLib.slicer_support.process_runner import ProcessRunner

from .lib_folder import SAMFEWSHOTLIB_PARENT_FOLDER


@dataclass
class SAMFewShotJob:
    """One ``samfewshot`` child process started by the logic.

    kind: what it runs ("propagate", "suggest", "weights list", "atlas apply", "batch", ...).
    runner: the ProcessRunner (progress tracker, output lines, return code).
    folder: its temporary folder (inputs, outputs), removed when the job is finished or cancelled.
    argv: the command line. volumeNode, segmentationNode, segmentId, engine: what it was started
    for. imagePath, outputPath, reportPath, jsonPath: its files. geometry: the input volume's grid
    (a SAMFewShotLib Volume taken from the node, so the result is checked without re-reading the
    image). details: per-kind extras.
    finished: True once its result was read or it was cancelled.
    """

    kind: str
    runner: ProcessRunner
    folder: str
    argv: list
    volumeNode: object = None
    segmentationNode: object = None
    segmentId: str = ""
    engine: str = ""
    imagePath: str = ""
    outputPath: str = ""
    reportPath: str = ""
    jsonPath: str = ""
    geometry: object = None
    details: dict = field(default_factory=dict)
    finished: bool = False

    @property
    def running(self) -> bool:
        return self.runner.running


class ChildJobs:
    """Starting, polling, waiting for, cancelling and reading ``samfewshot`` children
    (``logic.jobs`` of SAMFewShotLogic and of the Propagate effect; never touches widgets)."""

    @staticmethod
    def pythonExecutable() -> str:
        """Slicer's Python interpreter for child processes (PythonSlicer)."""
        python = shutil.which("PythonSlicer")
        if not python:
            raise RuntimeError("PythonSlicer was not found: the samfewshot command cannot be started")
        return python

    @staticmethod
    def childEnvironment() -> dict:
        """The environment of the child: Slicer's startup environment, with the folder holding
        SAMFewShotLib first on PYTHONPATH (``PythonSlicer -m SAMFewShotLib``)."""
        environment = dict(slicer.util.startupEnvironment())
        existing = environment.get("PYTHONPATH", "")
        if SAMFEWSHOTLIB_PARENT_FOLDER:
            environment["PYTHONPATH"] = SAMFEWSHOTLIB_PARENT_FOLDER + (os.pathsep + existing if existing else "")
        return environment

    @contextlib.contextmanager
    def jobFolder(self):
        """A new temporary folder for a job, removed again when the block raises (the job could
        not be started)."""
        folder = tempfile.mkdtemp(prefix="SAMFewShot-", dir=slicer.app.temporaryPath)
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def startJob(self, kind: str, argv: list, folder: str, **fields) -> SAMFewShotJob:
        """Start ``argv`` in ``folder`` with :meth:`childEnvironment`; ``fields`` fill the job."""
        runner = ProcessRunner()
        runner.start(argv, env=self.childEnvironment(), cwd=folder)
        logging.info(f"SAMFewShot: started {' '.join(argv)}")
        return SAMFewShotJob(kind=kind, runner=runner, folder=folder, argv=argv, **fields)

    @staticmethod
    def pollJob(job: SAMFewShotJob) -> list:
        """Read the child's new output without blocking; returns the new progress events."""
        return job.runner.poll()

    def waitForJob(self, job: SAMFewShotJob, timeoutSeconds: float = 1800) -> int:
        """Block until the job finished (tests, scripts); the GUI polls with a timer instead.

        Raises:
            TimeoutError: still running after ``timeoutSeconds`` (the job is cancelled).
        """
        deadline = time.monotonic() + timeoutSeconds
        while True:
            job.runner.poll()
            if not job.runner.running:
                return job.runner.returncode
            if time.monotonic() > deadline:
                self.cancelJob(job)
                raise TimeoutError(f"samfewshot {job.kind} did not finish within {timeoutSeconds:.0f} s")
            slicer.app.processEvents()
            time.sleep(0.05)

    @staticmethod
    def cancelJob(job: SAMFewShotJob) -> None:
        """Stop the child and every process it started; remove its temporary files. The scene is
        not touched (the result of a cancelled job is never loaded)."""
        try:
            job.runner.cancel()
        finally:
            job.finished = True
            shutil.rmtree(job.folder, ignore_errors=True)

    @staticmethod
    def jobFailure(job: SAMFewShotJob, okCodes: tuple = (0,)) -> Optional[Exception]:
        """The error of a finished job (ValueError for bad input, exit 2), or None when it exited
        with one of ``okCodes``."""
        runner = job.runner
        if runner.cancelled:
            return RuntimeError(f"samfewshot {job.kind} was cancelled")
        if runner.returncode in okCodes:
            return None
        message = runner.error_message() or f"samfewshot {job.kind} exited with code {runner.returncode}"
        return ValueError(message) if runner.returncode == 2 else RuntimeError(message)

    @contextlib.contextmanager
    def finishedJob(self, job: SAMFewShotJob, kind: str, okCodes: tuple = (0,)):
        """Read the result of a finished ``kind`` job inside the block; the job's folder is
        removed afterwards, whatever happens. ``okCodes``: the exit codes that are not failures.

        Raises:
            ValueError: ``job`` is not a ``kind`` job, or it failed on bad input (exit 2).
            RuntimeError: it is still running, was already read or cancelled, or failed.
        """
        if job.kind != kind:
            raise ValueError(f"Job kind must be {kind!r}, not {job.kind!r}")
        if job.running:
            raise RuntimeError(f"samfewshot {kind} is still running")
        if job.finished:
            raise RuntimeError(f"This {kind} job was already finished or cancelled")
        try:
            failure = self.jobFailure(job, okCodes)
            if failure is not None:
                raise failure
            yield job
        finally:
            job.finished = True
            shutil.rmtree(job.folder, ignore_errors=True)
