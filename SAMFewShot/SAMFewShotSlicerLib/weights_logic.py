"""SAM checkpoint jobs of the SAMFewShot logic: ``samfewshot weights list --json``, ``weights
import PATH`` and ``weights verify`` as child processes (hashing a checkpoint of several GB takes
a while; Slicer keeps running). Command lines and output parsing are in
``SAMFewShotLib.slicer_support.weights_commands``.
"""

import os

from SAMFewShotLib.slicer_support.weights_commands import (
    command_message, parse_weights_list, weights_import_command, weights_list_command, weights_verify_command,
)

#: Job kinds of the weights jobs (all three run in the Propagate section's JobMonitor).
WEIGHTS_JOB_KINDS = ("weights list", "weights import", "weights verify")


class WeightsLogicMixin:
    """List, import and verify SAM checkpoints in child processes (part of SAMFewShotLogic, which
    provides the child-job machinery; never touches widgets)."""

    def startWeightsList(self):
        """Start ``samfewshot weights list --json`` (read it with finishWeightsList)."""
        with self.jobFolder() as folder:
            return self.startJob("weights list", weights_list_command(self.pythonExecutable()), folder)

    def finishWeightsList(self, job) -> list:
        """Every checkpoint (CheckpointRow: name, status, licence, usable, ...) of a finished list job."""
        with self.finishedJob(job, "weights list"):
            return parse_weights_list("\n".join(job.runner.stdout_lines))

    def startCheckpointImport(self, path: str):
        """Start copying a checkpoint file into the weights cache (sha256-checked; the file is not changed)."""
        if not path or not os.path.isfile(path):
            raise ValueError(f"Checkpoint file {path!r} does not exist")
        with self.jobFolder() as folder:
            return self.startJob("weights import", weights_import_command(self.pythonExecutable(), path), folder)

    def startCheckpointVerify(self):
        """Start re-hashing the imported checkpoints (the job fails naming those that differ)."""
        with self.jobFolder() as folder:
            return self.startJob("weights verify", weights_verify_command(self.pythonExecutable()), folder)

    def finishWeightsCommand(self, job) -> str:
        """What a finished import or verify job says (raises its error when it failed)."""
        if job.kind not in WEIGHTS_JOB_KINDS[1:]:
            raise ValueError(f"Job kind must be 'weights import' or 'weights verify', not {job.kind!r}")
        with self.finishedJob(job, job.kind):
            return command_message(job.runner.stdout_lines, f"{job.kind.capitalize()} done.")

