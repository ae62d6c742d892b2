"""SAM checkpoint jobs of the SAMFewShot logic: ``samfewshot weights list --json``, ``weights
import PATH``, ``weights verify`` and ``weights download NAME`` as child processes (hashing or
downloading a checkpoint of several GB takes a while; Slicer keeps running). Command lines and
output parsing are in ``SAMFewShotLib.slicer_support.weights_commands``.
"""

import os

from SAMFewShotLib.slicer_support.weights_commands import (
    command_message, parse_weights_list, weights_download_command, weights_import_command, weights_list_command,
    weights_verify_command,
)

#: Job kinds of the weights jobs (all run in the Propagate section's JobMonitor).
WEIGHTS_JOB_KINDS = ("weights list", "weights import", "weights verify", "weights download")


class WeightsLogic:
    """List, import, verify and download SAM checkpoints in child processes (``logic.weights``;
    never touches widgets).

    Args:
        jobs: the ChildJobs running the children.
    """

    def __init__(self, jobs) -> None:
        self.jobs = jobs

    def startList(self):
        """Start ``samfewshot weights list --json`` (read it with finishList)."""
        with self.jobs.jobFolder() as folder:
            return self.jobs.startJob("weights list", weights_list_command(self.jobs.pythonExecutable()), folder)

    def finishList(self, job) -> list:
        """Every checkpoint (CheckpointRow: name, status, licence, size, url, usable) of a finished list job."""
        with self.jobs.finishedJob(job, "weights list"):
            return parse_weights_list("\n".join(job.runner.stdout_lines))

    def startImport(self, path: str):
        """Start copying a checkpoint file into the weights cache (sha256-checked; the file is not changed)."""
        if not path or not os.path.isfile(path):
            raise ValueError(f"Checkpoint file {path!r} does not exist")
        with self.jobs.jobFolder() as folder:
            return self.jobs.startJob("weights import", weights_import_command(self.jobs.pythonExecutable(), path), folder)

    def startVerify(self):
        """Start re-hashing the imported checkpoints (the job fails naming those that differ)."""
        with self.jobs.jobFolder() as folder:
            return self.jobs.startJob("weights verify", weights_verify_command(self.jobs.pythonExecutable()), folder)

    def startDownload(self, name: str):
        """Start downloading registry checkpoint ``name`` (the caller asked the user, showing its
        licence and size, first)."""
        with self.jobs.jobFolder() as folder:
            return self.jobs.startJob("weights download", weights_download_command(self.jobs.pythonExecutable(), name),
                                      folder, details={"name": name})

    def finishCommand(self, job) -> str:
        """What a finished import, verify or download job says (raises its error when it failed)."""
        if job.kind not in WEIGHTS_JOB_KINDS[1:]:
            raise ValueError(f"Job kind must be one of {', '.join(WEIGHTS_JOB_KINDS[1:])}, not {job.kind!r}")
        with self.jobs.finishedJob(job, job.kind):
            return command_message(job.runner.stdout_lines, f"{job.kind.capitalize()} done.")
