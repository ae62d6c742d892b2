"""Propagation jobs of the SAMFewShot logic, and the preview that Accept writes into the segment.

``samfewshot propagate`` and ``samfewshot suggest`` run in child processes on the exported volume
and drawn segment (start*/finish*, or the blocking :meth:`PropagationLogicMixin.propagate`). The
result is shown as a separate preview segmentation whose attributes say where Accept writes it;
Accept replaces the segment's content in one write (one Segment Editor undo step when the undo
state is recorded first), Reject removes the preview.
"""

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

import slicer
from SAMFewShotLib.slicer_support import commands, progress_lines

#: Attributes of a preview segmentation node: where Accept writes it.
PREVIEW_ATTRIBUTE_PREFIX = "SAMFewShot.Preview."
PREVIEW_SEGMENTATION_ATTRIBUTE = PREVIEW_ATTRIBUTE_PREFIX + "SegmentationNodeID"
PREVIEW_SEGMENT_ATTRIBUTE = PREVIEW_ATTRIBUTE_PREFIX + "SegmentID"
PREVIEW_VOLUME_ATTRIBUTE = PREVIEW_ATTRIBUTE_PREFIX + "VolumeNodeID"
PREVIEW_ENGINE_ATTRIBUTE = PREVIEW_ATTRIBUTE_PREFIX + "Engine"


@dataclass
class PropagationResult:
    """A finished propagation.

    labels: (k, j, i) uint8 0/1 array on the input volume's voxel grid (slicer.util.arrayFromVolume order).
    report: the ``--report`` JSON object (expected_dice, slice_confidence, seconds, counters, axis).
    seconds: wall time of the child process.
    """

    labels: np.ndarray
    report: dict
    seconds: float
    volumeNode: object
    segmentationNode: object
    segmentId: str
    segmentName: str
    engine: str
    details: dict = field(default_factory=dict)


class PropagationLogicMixin:
    """Propagate, suggest slices, preview, accept (part of SAMFewShotLogic, which provides the
    child-job machinery and the scene exchange; never touches widgets)."""

    def startPropagation(self, volumeNode, segmentationNode, segmentId: str, engine: str = "auto",
                         checkpoint: Optional[str] = None, axis: str = "auto", refine: Optional[int] = None,
                         emptySlices=None, init: Optional[str] = None):
        """Export the volume and the drawn segment and start ``samfewshot propagate`` on them.

        Nothing in the scene changes. Raises ValueError for bad inputs (no volume, unknown segment,
        empty segment, unknown engine or axis).
        """
        self.checkInputs(volumeNode, segmentationNode, segmentId)
        mask = self.segmentMask(volumeNode, segmentationNode, segmentId)
        if not mask.any():
            segmentName = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
            raise ValueError(f"Segment '{segmentName}' is empty: draw the structure on 1-10 slices first")
        with self.jobFolder() as folder:
            imagePath = os.path.join(folder, "image.nrrd")
            annotationPath = os.path.join(folder, "annotation.nrrd")
            outputPath = os.path.join(folder, "result.nrrd")
            reportPath = os.path.join(folder, "report.json")
            argv = commands.propagate_command(
                self.pythonExecutable(), imagePath, annotationPath, outputPath, reportPath,
                engine=engine, checkpoint=checkpoint, refine=refine, axis=axis, empty_slices=emptySlices, init=init,
            )
            self.exportVolume(volumeNode, imagePath)
            self.writeLabelsLike(mask, (), imagePath, annotationPath)
            return self.startJob(
                "propagate", argv, folder, volumeNode=volumeNode, segmentationNode=segmentationNode,
                segmentId=segmentId, engine=engine, imagePath=imagePath, outputPath=outputPath, reportPath=reportPath,
            )

    def startSuggestion(self, volumeNode, count: int, axis: str = "axial", sliceRange=None, checkpoint=None):
        """Export the volume and start ``samfewshot suggest`` (which slices to draw on)."""
        self.checkInputs(volumeNode)
        with self.jobFolder() as folder:
            imagePath = os.path.join(folder, "image.nrrd")
            jsonPath = os.path.join(folder, "suggestion.json")
            argv = commands.suggest_command(
                self.pythonExecutable(), imagePath, k=count, slice_range=sliceRange, axis=axis,
                checkpoint=checkpoint, json_path=jsonPath,
            )
            self.exportVolume(volumeNode, imagePath)
            return self.startJob("suggest", argv, folder, volumeNode=volumeNode, imagePath=imagePath, jsonPath=jsonPath)

    def finishPropagation(self, job) -> PropagationResult:
        """Read the result of a finished propagation (the scene is not changed)."""
        with self.finishedJob(job, "propagate"):
            labels = (self.readResultLabels(job.outputPath, job.imagePath).array > 0).astype(np.uint8)
            report = progress_lines.read_report(job.reportPath)
        segment = job.segmentationNode.GetSegmentation().GetSegment(job.segmentId)
        return PropagationResult(
            labels=labels, report=report, seconds=job.runner.elapsed_seconds, volumeNode=job.volumeNode,
            segmentationNode=job.segmentationNode, segmentId=job.segmentId,
            segmentName=segment.GetName() if segment is not None else job.segmentId, engine=job.engine,
        )

    def finishSuggestion(self, job) -> dict:
        """{"axis", "numpy_axis", "slices"} of a finished suggest job."""
        with self.finishedJob(job, "suggest"):
            suggestion = progress_lines.read_report(job.jsonPath)
        return {
            "axis": suggestion.get("axis", ""),
            "numpy_axis": int(suggestion["numpy_axis"]),
            "slices": [int(index) for index in suggestion["slices"]],
        }

    def propagate(self, volumeNode, segmentationNode, segmentId: str, engine: str = "auto", checkpoint=None,
                  axis: str = "auto", refine=None, emptySlices=None, init=None, timeoutSeconds: float = 1800) -> PropagationResult:
        """Blocking propagation (tests, scripts): start, wait, read the result."""
        job = self.startPropagation(volumeNode, segmentationNode, segmentId, engine=engine, checkpoint=checkpoint,
                                    axis=axis, refine=refine, emptySlices=emptySlices, init=init)
        self.waitForJob(job, timeoutSeconds)
        return self.finishPropagation(job)

    # Preview -----------------------------------------------------------------------------------

    def createPreview(self, result: PropagationResult):
        """A new segmentation node "<segment> (preview)" holding the result; the user's segmentation
        is not touched. Its attributes say where Accept writes it."""
        from SAMFewShotLib.volume import Segment

        target = result.segmentationNode.GetSegmentation().GetSegment(result.segmentId)
        if target is None:
            raise ValueError(f"Segment {result.segmentId!r} was removed while the propagation ran")
        name = f"{result.segmentName} (preview)"
        return self.newSegmentationFromLabels(
            name, result.volumeNode, result.labels, [Segment(value=1, name=name, color=tuple(target.GetColor()))],
            {
                PREVIEW_SEGMENTATION_ATTRIBUTE: result.segmentationNode.GetID(),
                PREVIEW_SEGMENT_ATTRIBUTE: result.segmentId,
                PREVIEW_VOLUME_ATTRIBUTE: result.volumeNode.GetID(),
                PREVIEW_ENGINE_ATTRIBUTE: result.engine,
            },
        )

    @staticmethod
    def previewTarget(previewNode):
        """(volume, segmentation, segment ID) that ``previewNode`` was computed for."""
        if previewNode is None or previewNode.GetAttribute(PREVIEW_SEGMENTATION_ATTRIBUTE) is None:
            raise ValueError("The node is not a SAMFewShot preview")
        volume = slicer.mrmlScene.GetNodeByID(previewNode.GetAttribute(PREVIEW_VOLUME_ATTRIBUTE))
        segmentation = slicer.mrmlScene.GetNodeByID(previewNode.GetAttribute(PREVIEW_SEGMENTATION_ATTRIBUTE))
        segmentId = previewNode.GetAttribute(PREVIEW_SEGMENT_ATTRIBUTE)
        if volume is None or segmentation is None:
            raise ValueError("The volume or segmentation of this preview was removed from the scene")
        if segmentation.GetSegmentation().GetSegment(segmentId) is None:
            raise ValueError(f"Segment {segmentId!r} is no longer in segmentation '{segmentation.GetName()}'")
        return volume, segmentation, segmentId

    def acceptPreview(self, previewNode) -> None:
        """Replace the target segment's content by the preview (one write) and remove the preview.

        To make it one Segment Editor undo step, record the undo state first
        (SAMFewShotWidget.saveSegmentEditorUndoState).
        """
        volume, segmentation, segmentId = self.previewTarget(previewNode)
        previewSegmentId = previewNode.GetSegmentation().GetNthSegmentID(0)
        with self.temporarySceneNodes():
            labels = slicer.util.arrayFromSegmentBinaryLabelmap(previewNode, previewSegmentId, volume)
            slicer.util.updateSegmentBinaryLabelmapFromArray((np.asarray(labels) > 0).astype(np.uint8), segmentation, segmentId, volume)
        self.removePreview(previewNode)

