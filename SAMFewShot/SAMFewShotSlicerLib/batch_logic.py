"""BatchLogic: ``samfewshot batch`` for the SAMFewShot module, without a GUI.

The inputs are volumes of the scene (exported with their geometry to ``<name>.nrrd`` files whose
stems are the case ids) or a folder searched by the command itself. The model is an atlas bundle,
a few-shot head (``.sfs``), or a reference: a volume of the scene and its segmentation, exported
as an image and a ``.seg.nrrd`` with the segments' names, colours and terminology. The per-case
lines of the running child fill a :class:`~SAMFewShotLib.slicer_support.batch_cases.CaseTable`;
finished cases' ``.seg.nrrd`` files can be loaded into the scene.

"Train a study model" comes from :class:`~.study_model_logic.StudyModelLogic`.
"""

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import slicer

from SAMFewShotLib.slicer_support import batch_cases, batch_commands

from .study_model_logic import STUDY_MODEL_JOB, StudyModelLogic

#: Exit code of ``samfewshot batch`` when some cases failed (the others are written).
EXIT_CASES_FAILED = 3


@dataclass
class BatchPreparation:
    """A batch whose inputs are being exported: ``steps`` are (what, export function) pairs still
    to run; ``argv`` the command started by :meth:`BatchLogic.launch`; ``folder`` its temporary
    folder (removed by :meth:`discard`)."""

    folder: str
    outputFolder: str
    modelPath: str
    inputs: list
    caseVolumes: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    annotation: Optional[str] = None
    argv: list = field(default_factory=list)
    total: int = 0
    jobKind: str = "batch"

    def runNextStep(self) -> str:
        """Export the next input; returns what was exported."""
        what, step = self.steps.pop(0)
        try:
            step()
        except BaseException:
            self.discard()
            raise
        return what

    def discard(self) -> None:
        """Forget the exports (cancel, or a step failed): the folder is removed."""
        self.steps = []
        shutil.rmtree(self.folder, ignore_errors=True)


class BatchLogic(StudyModelLogic):
    """Batch jobs of the SAMFewShot module.

    Args:
        jobs: the ChildJobs (child processes). scene: the SceneExchange (export).
    """

    def __init__(self, jobs, scene) -> None:
        self.jobs = jobs
        self.scene = scene

    def start(self, outputFolder: str, volumeNodes: Sequence = (), inputFolder: str = "", modelKind: str = "atlas",
              modelPath: str = "", referenceVolume=None, referenceSegmentation=None, scheduler: str = "",
              checkpoint: Optional[str] = None, engine: Optional[str] = None, force: bool = False):
        """Export what the batch needs and start ``samfewshot batch ... --progress json``.

        Args:
            outputFolder: where the results, qc.csv and qc.html go (created by the command).
            volumeNodes: scalar volumes of the scene to process, or empty to use ``inputFolder``.
            inputFolder: a folder searched for images and DICOM series (when no volumes).
            modelKind: ``atlas``, ``head`` or ``reference``
                (:data:`~SAMFewShotLib.slicer_support.batch_commands.MODEL_KINDS`).
            modelPath: the bundle or the ``.sfs`` head (atlas, head).
            referenceVolume, referenceSegmentation: the reference model (reference).
            scheduler: "" (local processes), ``local:N`` or ``tcp://HOST:PORT``.
            checkpoint: SAM checkpoint: the one a head was trained on, or the weights of a
                weighted engine for a reference (not passed with an atlas bundle).
            engine: how a reference's annotation is propagated on the reference first (None:
                the command's default, auto; ``none`` when it is complete).
            force: recompute cases whose outputs exist.

        Raises:
            ValueError: naming the bad input (no inputs, both inputs kinds, no model, a volume
                under a transform, a bad scheduler address, an empty reference segmentation).
        """
        preparation = self.prepare(outputFolder, volumeNodes, inputFolder, modelKind, modelPath, referenceVolume,
                                   referenceSegmentation, scheduler, checkpoint, engine, force)
        return self.runStepsAndLaunch(preparation)

    def prepare(self, outputFolder: str, volumeNodes: Sequence = (), inputFolder: str = "", modelKind: str = "atlas",
                modelPath: str = "", referenceVolume=None, referenceSegmentation=None, scheduler: str = "",
                checkpoint: Optional[str] = None, engine: Optional[str] = None, force: bool = False):
        """Check the inputs and plan the exports without writing anything: a
        :class:`BatchPreparation` whose ``steps`` export one volume each (the GUI runs them one
        per timer tick, so Slicer stays responsive and the export can be cancelled); then
        :meth:`launch`. Arguments and errors as :meth:`start`."""
        if modelKind not in batch_commands.MODEL_KINDS:
            raise ValueError(f"Model kind must be one of {', '.join(batch_commands.MODEL_KINDS)}, not {modelKind!r}")
        if not (outputFolder or "").strip():
            raise ValueError("Choose the output folder of the batch")
        volumeNodes = list(volumeNodes)
        if volumeNodes and inputFolder:
            raise ValueError("Choose either volumes of the scene or an input folder, not both")
        if not volumeNodes and not (inputFolder and os.path.isdir(inputFolder)):
            raise ValueError(f"Choose volumes of the scene or an existing input folder, not {inputFolder!r}")
        for volumeNode in volumeNodes + ([referenceVolume] if modelKind == "reference" else []):
            self.scene.checkInputs(volumeNode)
        batch_commands.check_scheduler(scheduler)
        if modelKind != "reference" and (not modelPath or not os.path.exists(modelPath)):
            raise ValueError(f"Choose the batch model: an atlas bundle or a few-shot head (.sfs), not {modelPath!r}")
        outputFolder = os.path.abspath(outputFolder)
        with self.jobs.jobFolder() as folder:
            preparation = BatchPreparation(folder=folder, outputFolder=outputFolder, modelPath=modelPath,
                                           inputs=[] if volumeNodes else [inputFolder])
            if volumeNodes:
                names = batch_cases.unique_case_names([volumeNode.GetName() for volumeNode in volumeNodes])
                for name, volumeNode in zip(names, volumeNodes):
                    path = os.path.join(folder, "inputs", f"{name}.nrrd")
                    preparation.inputs.append(path)
                    preparation.caseVolumes[name] = volumeNode.GetID()
                    preparation.steps.append((f"volume '{volumeNode.GetName()}'", self._exportStep(volumeNode, path)))
            if modelKind == "reference":
                preparation.modelPath = os.path.join(folder, "reference", "reference.nrrd")
                preparation.annotation = os.path.join(folder, "reference", "reference.seg.nrrd")
                preparation.steps.append(("the reference", self._referenceStep(
                    referenceVolume, referenceSegmentation, preparation.modelPath, preparation.annotation)))
            preparation.argv = batch_commands.batch_command(
                self.jobs.pythonExecutable(), preparation.inputs, preparation.modelPath, outputFolder,
                annotation=preparation.annotation, engine=engine if modelKind == "reference" else None,
                checkpoint=checkpoint if modelKind != "atlas" else None, scheduler=scheduler, force=force,
            )
            preparation.total = len(preparation.steps)
            return preparation

    def _exportStep(self, volumeNode, path: str):
        def export():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.scene.exportVolume(volumeNode, path)
        return export

    def _referenceStep(self, referenceVolume, referenceSegmentation, imagePath: str, annotationPath: str):
        def export():
            os.makedirs(os.path.dirname(imagePath), exist_ok=True)
            self.scene.exportVolume(referenceVolume, imagePath)
            self.scene.exportSegmentationLabels(referenceVolume, referenceSegmentation, annotationPath)
        return export

    def launch(self, preparation: "BatchPreparation"):
        """Start the child once every export step ran (the folder is removed if it cannot start)."""
        if preparation.steps:
            raise RuntimeError(f"{len(preparation.steps)} export steps of the batch have not run yet")
        table = batch_cases.CaseTable(list(preparation.caseVolumes))
        if preparation.jobKind == STUDY_MODEL_JOB:
            details = {"bundle": preparation.modelPath}
        else:
            details = {"table": table, "caseVolumes": preparation.caseVolumes,
                       "outputFolder": preparation.outputFolder}
        try:
            return self.jobs.startJob(preparation.jobKind, preparation.argv, preparation.folder, details=details)
        except BaseException:
            preparation.discard()
            raise

    @staticmethod
    def readCases(job) -> list:
        """Record the per-case lines the running child wrote since the last call; returns the
        new :class:`~SAMFewShotLib.slicer_support.batch_cases.CaseStatus` entries."""
        return job.details["table"].update(job.runner.take_stdout_lines())

    def finish(self, job):
        """The case table of a finished batch: failed cases are in the table (exit 3 is not an
        error); a batch that could not run (bad input, crash) raises after the cases that
        finished before are recorded."""
        self.readCases(job)
        with self.jobs.finishedJob(job, "batch", okCodes=(0, EXIT_CASES_FAILED)):
            return job.details["table"]

    def loadResults(self, table, caseVolumes: dict, outputFolder: str) -> list:
        """Load the result of every finished case of ``table`` as a segmentation node named
        "<case> (batch)", on the grid of its scene volume when it came from the scene.

        Returns:
            The loaded segmentation nodes.

        Raises:
            ValueError: no case has a result, or a result file is missing.
        """
        rows = table.loadable()
        if not rows:
            raise ValueError("No finished case to load yet")
        nodes = []
        for row in rows:
            path = row.output if os.path.isabs(row.output) else os.path.join(outputFolder, row.output)
            if not os.path.isfile(path):
                raise ValueError(f"The result of case {row.case} is missing: {path}")
            node = slicer.util.loadSegmentation(path)
            node.SetName(f"{row.case} (batch)")
            volumeNode = slicer.mrmlScene.GetNodeByID(caseVolumes[row.case]) if row.case in caseVolumes else None
            if volumeNode is not None:
                node.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
            nodes.append(node)
        return nodes
