"""StudyModelLogic: the Batch section's "Train a study model", without a GUI (a part of
:class:`~.batch_logic.BatchLogic`).

A labelled volume, its segmentation and the other checked volumes of the scene are exported
(one step per timer tick, as a batch's inputs) and ``samfewshot sfr train ... --progress json``
starts as a child job; the bundle it writes is then the batch's atlas bundle. A cancelled
training keeps its checkpoint in ``<bundle>.work`` and continues with ``resume=True``.
"""

import os
from collections.abc import Sequence
from typing import Optional

from SAMFewShotLib.slicer_support import batch_cases, sfr_commands

#: Job kind of "Train a study model" (``samfewshot sfr train``).
STUDY_MODEL_JOB = "sfr train"


class StudyModelLogic:
    """Study model training for :class:`~.batch_logic.BatchLogic` (uses its ``jobs``, ``scene``,
    ``_exportStep``, ``_referenceStep`` and ``launch``)."""

    def prepareStudyModel(self, bundle: str, labelledVolume, labelledSegmentation, volumeNodes: Sequence,
                          pseudo: str = "atlas", checkpoint: Optional[str] = None, select: Optional[float] = None,
                          iterations: Optional[int] = None, resume: bool = False):
        """Check the inputs and plan the exports of "Train a study model" (run the steps, then
        :meth:`launch`; :meth:`finishStudyModel` gives the bundle).

        Args:
            bundle: the study model to write (``.zip`` or a folder; its folder must exist).
            labelledVolume, labelledSegmentation: the labelled volume and its segmentation (every
                segment is a structure; names, colours and terminology are kept).
            volumeNodes: the study's unlabelled volumes (the labelled volume among them is skipped).
            pseudo, checkpoint, select, iterations, resume: as
                :func:`~SAMFewShotLib.slicer_support.sfr_commands.sfr_train_command`.

        Raises:
            ValueError: naming the bad input (no bundle path or folder, no labelled volume or
                segmentation, no other volume, a volume under a transform, a bad option).
        """
        bundle = (bundle or "").strip()
        if not bundle:
            raise ValueError("Choose where to write the study model (an atlas bundle .zip)")
        bundle = os.path.abspath(bundle)
        if not os.path.isdir(os.path.dirname(bundle)):
            raise ValueError(f"The study model's folder does not exist: {os.path.dirname(bundle)}")
        if labelledVolume is None or labelledSegmentation is None:
            raise ValueError("Select the labelled volume and its segmentation in the Propagate section")
        others = [node for node in volumeNodes if node.GetID() != labelledVolume.GetID()]
        if not others:
            raise ValueError("Check at least one unlabelled volume of the study besides the labelled one")
        for volumeNode in [labelledVolume] + others:
            self.scene.checkInputs(volumeNode)
        from .batch_logic import BatchPreparation  # the batch's own plan of export steps

        with self.jobs.jobFolder() as folder:
            imagePath = os.path.join(folder, "labelled", "labelled.nrrd")
            labelsPath = os.path.join(folder, "labelled", "labelled.seg.nrrd")
            unlabelledFolder = os.path.join(folder, "unlabelled")
            argv = sfr_commands.sfr_train_command(
                self.jobs.pythonExecutable(), imagePath, labelsPath, unlabelledFolder, bundle, pseudo=pseudo,
                checkpoint=checkpoint, select=select, iterations=iterations, resume=resume)
            preparation = BatchPreparation(folder=folder, outputFolder=os.path.dirname(bundle), modelPath=bundle,
                                           inputs=[unlabelledFolder], argv=argv, jobKind=STUDY_MODEL_JOB)
            preparation.steps.append((f"the labelled volume '{labelledVolume.GetName()}'", self._referenceStep(
                labelledVolume, labelledSegmentation, imagePath, labelsPath)))
            names = batch_cases.unique_case_names([volumeNode.GetName() for volumeNode in others])
            for name, volumeNode in zip(names, others):
                path = os.path.join(unlabelledFolder, f"{name}.nrrd")
                preparation.steps.append((f"volume '{volumeNode.GetName()}'", self._exportStep(volumeNode, path)))
            preparation.total = len(preparation.steps)
            return preparation

    def startStudyModel(self, bundle: str, labelledVolume, labelledSegmentation, volumeNodes: Sequence, **options):
        """:meth:`prepareStudyModel`, every export step, :meth:`launch` (scripts and tests; the
        panel runs the steps one per timer tick)."""
        preparation = self.prepareStudyModel(bundle, labelledVolume, labelledSegmentation, volumeNodes, **options)
        return self.runStepsAndLaunch(preparation)

    def runStepsAndLaunch(self, preparation):
        """Every export step of ``preparation``, then :meth:`launch`; the preparation's
        temporary files are discarded if any step or the launch fails."""
        try:
            while preparation.steps:
                preparation.runNextStep()
            return self.launch(preparation)
        except BaseException:
            preparation.discard()
            raise

    def finishStudyModel(self, job) -> str:
        """The bundle a finished "Train a study model" job wrote (ValueError for bad input,
        RuntimeError when it failed or was cancelled; the checkpoint stays for resume)."""
        with self.jobs.finishedJob(job, STUDY_MODEL_JOB):
            return job.details["bundle"]

    @staticmethod
    def canResumeStudyModel(bundle: str) -> bool:
        """Whether a cancelled training of ``bundle`` left a checkpoint to resume."""
        return bool((bundle or "").strip()) and sfr_commands.can_resume(os.path.abspath(bundle.strip()))

