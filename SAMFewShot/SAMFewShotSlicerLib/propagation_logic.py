"""Propagation jobs of the SAMFewShot logic, and the preview that Apply / Accept writes.

``samfewshot propagate`` and ``samfewshot suggest`` run in child processes on the exported volume
and drawn segment (start/finish, or the blocking :meth:`PropagationLogic.propagate`). The result
is shown as a separate preview segmentation of three segments, so what was drawn and what was
predicted can be told apart (``SAMFewShotLib.slicer_support.preview_parts``): the drawn slices as
drawn, the propagated voxels in outline, the slices under the confidence threshold in orange.
Its attributes say where it is written; the Segment Editor writes it (``editor_bridge``), honouring
the editor's masking, as one undoable step.
"""

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

import slicer
from SAMFewShotLib.slicer_support import commands, preview_parts, progress_lines

#: Attributes of a preview segmentation node: where its result is written.
PREVIEW_ATTRIBUTE_PREFIX = "SAMFewShot.Preview."
PREVIEW_SEGMENTATION_ATTRIBUTE = PREVIEW_ATTRIBUTE_PREFIX + "SegmentationNodeID"
PREVIEW_SEGMENT_ATTRIBUTE = PREVIEW_ATTRIBUTE_PREFIX + "SegmentID"
PREVIEW_VOLUME_ATTRIBUTE = PREVIEW_ATTRIBUTE_PREFIX + "VolumeNodeID"
PREVIEW_ENGINE_ATTRIBUTE = PREVIEW_ATTRIBUTE_PREFIX + "Engine"
#: Colour of the low-confidence part of a preview (orange), and 2D fill opacity of each part:
#: the drawn slices filled, the predicted voxels mostly outline.
LOW_CONFIDENCE_COLOR = (1.0, 0.55, 0.0)
PART_FILL_OPACITY = {"drawn": 0.6, "propagated": 0.15, "low confidence": 0.25}


@dataclass
class PropagationResult:
    """A finished propagation.

    labels: (k, j, i) uint8 0/1 array on the input volume's voxel grid (slicer.util.arrayFromVolume order).
    drawn: (k, j, i) uint8 0/1 array of what was drawn when the job started.
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
    drawn: Optional[np.ndarray] = None
    details: dict = field(default_factory=dict)

    @property
    def axis(self) -> int:
        """The annotated numpy axis (0 when the report does not say)."""
        axis = self.report.get("axis")
        return int(axis) if axis in (0, 1, 2) else 0

    def parts(self, threshold: float = preview_parts.DEFAULT_CONFIDENCE_THRESHOLD):
        """Drawn / propagated / low-confidence parts (PreviewParts)."""
        drawn = self.drawn if self.drawn is not None else np.zeros_like(self.labels)
        return preview_parts.split_preview(self.labels, drawn, self.axis, preview_parts.report_confidences(self.report),
                                           threshold)


class PropagationLogic:
    """Propagate, suggest slices, preview (``logic.propagation``; never touches widgets).

    Args:
        jobs: the ChildJobs running the children. scene: the SceneExchange.
    """

    def __init__(self, jobs, scene) -> None:
        self.jobs = jobs
        self.scene = scene

    def start(self, volumeNode, segmentationNode, segmentId: str, engine: str = "auto",
              checkpoint: Optional[str] = None, axis: str = "auto", refine: Optional[int] = None,
              emptySlices=None, init: Optional[str] = None, device: str = "auto"):
        """Export the volume (uncompressed) and the drawn segment and start ``samfewshot
        propagate`` on them. Nothing in the scene changes.

        Raises:
            ValueError: no volume, unknown or empty segment, unknown engine, axis or device.
        """
        self.scene.checkInputs(volumeNode, segmentationNode, segmentId)
        mask = self.scene.segmentMask(volumeNode, segmentationNode, segmentId)
        if not mask.any():
            segmentName = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
            raise ValueError(f"Segment '{segmentName}' is empty: draw the structure on 1-10 slices first")
        with self.jobs.jobFolder() as folder:
            imagePath = os.path.join(folder, "image.nrrd")
            annotationPath = os.path.join(folder, "annotation.nrrd")
            outputPath = os.path.join(folder, "result.nrrd")
            reportPath = os.path.join(folder, "report.json")
            argv = commands.propagate_command(
                self.jobs.pythonExecutable(), imagePath, annotationPath, outputPath, reportPath, engine=engine,
                checkpoint=checkpoint, refine=refine, axis=axis, empty_slices=emptySlices, init=init, device=device,
            )
            geometry = self.scene.volumeGeometry(volumeNode)
            self.scene.exportVolume(volumeNode, imagePath)
            self.scene.writeLabelsLike(mask, (), geometry, annotationPath)
            return self.jobs.startJob(
                "propagate", argv, folder, volumeNode=volumeNode, segmentationNode=segmentationNode,
                segmentId=segmentId, engine=engine, imagePath=imagePath, outputPath=outputPath, reportPath=reportPath,
                geometry=geometry, details={"drawn": mask},
            )

    def startSuggestion(self, volumeNode, count: int, axis: str = "axial", sliceRange=None, checkpoint=None):
        """Export the volume and start ``samfewshot suggest`` (which slices to draw on)."""
        self.scene.checkInputs(volumeNode)
        with self.jobs.jobFolder() as folder:
            imagePath = os.path.join(folder, "image.nrrd")
            jsonPath = os.path.join(folder, "suggestion.json")
            argv = commands.suggest_command(
                self.jobs.pythonExecutable(), imagePath, k=count, slice_range=sliceRange, axis=axis,
                checkpoint=checkpoint, json_path=jsonPath,
            )
            self.scene.exportVolume(volumeNode, imagePath)
            return self.jobs.startJob("suggest", argv, folder, volumeNode=volumeNode, imagePath=imagePath, jsonPath=jsonPath)

    def finish(self, job) -> PropagationResult:
        """Read the result of a finished propagation (the scene is not changed)."""
        with self.jobs.finishedJob(job, "propagate"):
            labels = (self.scene.readResultLabels(job.outputPath, job.geometry).array > 0).astype(np.uint8)
            report = progress_lines.read_report(job.reportPath)
        segment = job.segmentationNode.GetSegmentation().GetSegment(job.segmentId)
        return PropagationResult(
            labels=labels, report=report, seconds=job.runner.elapsed_seconds, volumeNode=job.volumeNode,
            segmentationNode=job.segmentationNode, segmentId=job.segmentId,
            segmentName=segment.GetName() if segment is not None else job.segmentId, engine=job.engine,
            drawn=job.details.get("drawn"),
        )

    def finishSuggestion(self, job) -> dict:
        """{"axis", "numpy_axis", "slices"} of a finished suggest job."""
        with self.jobs.finishedJob(job, "suggest"):
            suggestion = progress_lines.read_report(job.jsonPath)
        return {
            "axis": suggestion.get("axis", ""),
            "numpy_axis": int(suggestion["numpy_axis"]),
            "slices": [int(index) for index in suggestion["slices"]],
        }

    def propagate(self, volumeNode, segmentationNode, segmentId: str, engine: str = "auto", checkpoint=None,
                  axis: str = "auto", refine=None, emptySlices=None, init=None, device: str = "auto",
                  timeoutSeconds: float = 1800) -> PropagationResult:
        """Blocking propagation (tests, scripts): start, wait, read the result."""
        job = self.start(volumeNode, segmentationNode, segmentId, engine=engine, checkpoint=checkpoint, axis=axis,
                         refine=refine, emptySlices=emptySlices, init=init, device=device)
        self.jobs.waitForJob(job, timeoutSeconds)
        return self.finish(job)

    # Preview -----------------------------------------------------------------------------------

    def createPreview(self, result: PropagationResult, threshold: float = preview_parts.DEFAULT_CONFIDENCE_THRESHOLD):
        """A new segmentation node "<segment> (preview)" with the drawn, propagated and
        low-confidence parts as three segments; the user's segmentation is not touched. Its
        attributes say where it is written. Returns (node, PreviewParts)."""
        from SAMFewShotLib.volume import Segment

        target = result.segmentationNode.GetSegmentation().GetSegment(result.segmentId)
        if target is None:
            raise ValueError(f"Segment {result.segmentId!r} was removed while the propagation ran")
        parts = result.parts(threshold)
        labels = parts.drawn + 2 * parts.propagated + 3 * parts.low_confidence  # disjoint parts
        color = tuple(target.GetColor())
        names = [f"{result.segmentName} {part}" for part in PART_FILL_OPACITY]
        node = self.scene.newSegmentationFromLabels(
            f"{result.segmentName} (preview)", result.volumeNode, labels,
            [Segment(value=1, name=names[0], color=color), Segment(value=2, name=names[1], color=color),
             Segment(value=3, name=names[2], color=LOW_CONFIDENCE_COLOR)],
            {
                PREVIEW_SEGMENTATION_ATTRIBUTE: result.segmentationNode.GetID(),
                PREVIEW_SEGMENT_ATTRIBUTE: result.segmentId,
                PREVIEW_VOLUME_ATTRIBUTE: result.volumeNode.GetID(),
                PREVIEW_ENGINE_ATTRIBUTE: result.engine,
            },
        )
        displayNode = node.GetDisplayNode()
        for index, opacity in enumerate(PART_FILL_OPACITY.values()):
            segmentId = node.GetSegmentation().GetNthSegmentID(index)
            displayNode.SetSegmentOpacity2DFill(segmentId, opacity)
            displayNode.SetSegmentOpacity2DOutline(segmentId, 1.0)
        return node, parts

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

    @staticmethod
    def previewLabelmaps(previewNode) -> list:
        """The preview's parts as vtkOrientedImageData binary labelmaps (drawn first), for
        ``modifySegmentByLabelmap``."""
        labelmaps = []
        segmentation = previewNode.GetSegmentation()
        for index in range(segmentation.GetNumberOfSegments()):
            labelmap = slicer.vtkOrientedImageData()
            previewNode.GetBinaryLabelmapRepresentation(segmentation.GetNthSegmentID(index), labelmap)
            labelmaps.append(labelmap)
        return labelmaps
