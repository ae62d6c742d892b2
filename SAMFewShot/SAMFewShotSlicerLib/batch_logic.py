"""BatchLogic: ``samfewshot batch`` for the SAMFewShot module, without a GUI.

The inputs are volumes of the scene (exported with their geometry to ``<name>.nrrd`` files whose
stems are the case ids) or a folder searched by the command itself. The model is an atlas bundle,
a few-shot head (``.sfs``), or a reference: a volume of the scene and its segmentation, exported
as an image and a ``.seg.nrrd`` with the segments' names, colours and terminology. The per-case
lines of the running child fill a :class:`~SAMFewShotLib.slicer_support.batch_cases.CaseTable`;
finished cases' ``.seg.nrrd`` files can be loaded into the scene.
"""

import os
from typing import Optional, Sequence

import slicer
from SAMFewShotLib.slicer_support import batch_cases, batch_commands

#: Exit code of ``samfewshot batch`` when some cases failed (the others are written).
EXIT_CASES_FAILED = 3


class BatchLogic:
    """Batch jobs of the SAMFewShot module.

    Args:
        logic: the SAMFewShotLogic (child processes, export).
    """

    def __init__(self, logic) -> None:
        self.logic = logic

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
            self.logic.checkInputs(volumeNode)
        batch_commands.check_scheduler(scheduler)
        outputFolder = os.path.abspath(outputFolder)
        with self.logic.jobFolder() as folder:
            caseVolumes, inputs = {}, [inputFolder]
            if volumeNodes:
                names = batch_cases.unique_case_names([volumeNode.GetName() for volumeNode in volumeNodes])
                inputs = []
                for name, volumeNode in zip(names, volumeNodes):
                    path = os.path.join(folder, "inputs", f"{name}.nrrd")
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    self.logic.exportVolume(volumeNode, path)
                    inputs.append(path)
                    caseVolumes[name] = volumeNode.GetID()
            annotation = None
            if modelKind == "reference":
                modelPath = os.path.join(folder, "reference", "reference.nrrd")
                annotation = os.path.join(folder, "reference", "reference.seg.nrrd")
                os.makedirs(os.path.dirname(modelPath), exist_ok=True)
                self.logic.exportVolume(referenceVolume, modelPath)
                self.logic.exportSegmentationLabels(referenceVolume, referenceSegmentation, modelPath, annotation)
            elif not modelPath or not os.path.exists(modelPath):
                raise ValueError(f"Choose the batch model: an atlas bundle or a few-shot head (.sfs), not {modelPath!r}")
            argv = batch_commands.batch_command(
                self.logic.pythonExecutable(), inputs, modelPath, outputFolder, annotation=annotation,
                engine=engine if modelKind == "reference" else None,
                checkpoint=checkpoint if modelKind != "atlas" else None,
                scheduler=scheduler, force=force,
            )
            table = batch_cases.CaseTable(list(caseVolumes))
            return self.logic.startJob(
                "batch", argv, folder, details={"table": table, "caseVolumes": caseVolumes, "outputFolder": outputFolder},
            )

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
        with self.logic.finishedJob(job, "batch", okCodes=(0, EXIT_CASES_FAILED)):
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
