"""AtlasLogic: atlas bundles for the SAMFewShot module, without a GUI.

- :meth:`AtlasLogic.startInfo` / :meth:`finishInfo`: ``samfewshot atlas info BUNDLE --json`` in a
  child process -> :class:`~SAMFewShotLib.slicer_support.atlas_commands.AtlasInfo`.
- :meth:`startApply` / :meth:`finishApply`: export the volume, run ``samfewshot atlas apply``,
  read the ``.seg.nrrd`` it wrote (names, colours, terminology) -> :class:`AtlasResult`.
- :meth:`createPreview`: a separate preview segmentation; :meth:`acceptPreview` adds its segments
  to a segmentation (one write per segment; record the Segment Editor undo state first to make it
  one undoable step); ``logic.scene.removePreview`` rejects it.
- :meth:`startCreate`: ``samfewshot atlas create`` from a volume and its segmentation (scripts,
  the self-test).

Everything long runs in a child process (start*/finish* with ``logic.jobs``);
nothing in the scene changes before :meth:`createPreview`.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

import slicer
from SAMFewShotLib.slicer_support import atlas_commands, progress_lines

#: Attributes of an atlas preview segmentation node.
ATLAS_PREVIEW_ATTRIBUTE_PREFIX = "SAMFewShot.AtlasPreview."
ATLAS_PREVIEW_VOLUME_ATTRIBUTE = ATLAS_PREVIEW_ATTRIBUTE_PREFIX + "VolumeNodeID"
ATLAS_PREVIEW_BUNDLE_ATTRIBUTE = ATLAS_PREVIEW_ATTRIBUTE_PREFIX + "Bundle"


@dataclass
class AtlasResult:
    """A finished ``atlas apply``.

    labels: SAMFewShotLib LabelVolume on the input volume's grid: array (k, j, i) = (z, y, x)
        as slicer.util.arrayFromVolume orders it, 0 = background; segments carry value, name,
        colour (r, g, b in [0, 1]) and terminology.
    report: the ``--report`` JSON object. seconds: wall time of the child process.
    """

    labels: object
    report: dict
    seconds: float
    volumeNode: object
    bundle: str
    details: dict = field(default_factory=dict)


class AtlasLogic:
    """Atlas bundle jobs of the SAMFewShot module.

    Args:
        jobs: the ChildJobs (child processes). scene: the SceneExchange (export, previews).
    """

    def __init__(self, jobs, scene) -> None:
        self.jobs = jobs
        self.scene = scene

    @staticmethod
    def bundlePath(path: str) -> str:
        """The bundle a chosen path names: a ``.zip`` file, a bundle folder, or the
        ``manifest.json`` of a bundle folder (its folder). Raises ValueError otherwise."""
        from SAMFewShotLib.atlas.bundle import MANIFEST, is_bundle

        text = os.fspath(path or "").strip()
        if not text:
            raise ValueError("Choose an atlas bundle: a .zip file or a folder holding manifest.json")
        candidate = Path(text)
        if candidate.name == MANIFEST and candidate.is_file():
            candidate = candidate.parent
        if not is_bundle(candidate):
            raise ValueError(f"{text!r} is not an atlas bundle: choose a .zip file or a folder holding manifest.json")
        return str(candidate)

    # Describe ----------------------------------------------------------------------------------

    def startInfo(self, bundle: str):
        """Start ``samfewshot atlas info BUNDLE --json``."""
        path = self.bundlePath(bundle)
        with self.jobs.jobFolder() as folder:
            argv = atlas_commands.atlas_info_command(self.jobs.pythonExecutable(), path)
            return self.jobs.startJob("atlas info", argv, folder, details={"bundle": path})

    def finishInfo(self, job):
        """The :class:`~SAMFewShotLib.slicer_support.atlas_commands.AtlasInfo` of a finished info job."""
        with self.jobs.finishedJob(job, "atlas info"):
            return atlas_commands.parse_atlas_info("\n".join(job.runner.stdout_lines))

    # Apply -------------------------------------------------------------------------------------

    def startApply(self, volumeNode, bundle: str, fusion: Optional[str] = None, refine: bool = False,
                   checkpoint: Optional[str] = None, device: str = "auto"):
        """Export ``volumeNode`` and start ``samfewshot atlas apply`` on it (nothing in the scene
        changes). ``refine`` adds SAM refinement from atlas prompts with ``checkpoint``.

        Raises:
            ValueError: no volume, a volume under a transform, not a bundle, a bad fusion, or
                refinement without a checkpoint.
        """
        self.scene.checkInputs(volumeNode)
        path = self.bundlePath(bundle)
        with self.jobs.jobFolder() as folder:
            imagePath = os.path.join(folder, "image.nrrd")
            outputPath = os.path.join(folder, "atlas.seg.nrrd")
            reportPath = os.path.join(folder, "report.json")
            argv = atlas_commands.atlas_apply_command(
                self.jobs.pythonExecutable(), imagePath, path, outputPath, reportPath,
                fusion=fusion, refine="sam" if refine else None, checkpoint=checkpoint, device=device,
            )
            self.scene.exportVolume(volumeNode, imagePath)
            return self.jobs.startJob(
                "atlas apply", argv, folder, volumeNode=volumeNode, imagePath=imagePath, outputPath=outputPath,
                geometry=self.scene.volumeGeometry(volumeNode),
                reportPath=reportPath, details={"bundle": path},
            )

    def finishApply(self, job) -> AtlasResult:
        """Read the segments of a finished apply job (checked to lie on the volume's grid)."""
        with self.jobs.finishedJob(job, "atlas apply"):
            labels = self.scene.readResultLabels(job.outputPath, job.geometry)
            report = progress_lines.read_report(job.reportPath)
        return AtlasResult(labels=labels, report=report, seconds=job.runner.elapsed_seconds,
                           volumeNode=job.volumeNode, bundle=job.details["bundle"])

    def createPreview(self, result: AtlasResult, name: str):
        """A new segmentation "<name> (atlas preview)" with one segment per structure found
        (name, colour, terminology of the bundle). Nothing else in the scene changes."""
        segments = [segment for segment in result.labels.segments if segment.value in set(result.labels.label_values())]
        if not segments:
            raise ValueError(f"The atlas found none of its structures in volume '{result.volumeNode.GetName()}'")
        return self.scene.newSegmentationFromLabels(
            f"{name} (atlas preview)", result.volumeNode, result.labels.array, segments,
            {ATLAS_PREVIEW_VOLUME_ATTRIBUTE: result.volumeNode.GetID(), ATLAS_PREVIEW_BUNDLE_ATTRIBUTE: result.bundle},
        )

    @staticmethod
    def previewVolume(previewNode):
        """The volume an atlas preview was computed for (ValueError when it is not one, or the
        volume was removed)."""
        volumeId = previewNode.GetAttribute(ATLAS_PREVIEW_VOLUME_ATTRIBUTE) if previewNode is not None else None
        if volumeId is None:
            raise ValueError("The node is not a SAMFewShot atlas preview")
        volume = slicer.mrmlScene.GetNodeByID(volumeId)
        if volume is None:
            raise ValueError("The volume of this atlas preview was removed from the scene")
        return volume

    def acceptPreview(self, previewNode, segmentationNode=None):
        """Write every preview segment into ``segmentationNode`` (a new segmentation named after
        the volume when None) and remove the preview. A segment whose name is already there gets
        the preview's voxels (its ID and colour kept; the terminology set when it had none); the
        others are added with the bundle's name, colour and terminology.

        Returns:
            The segmentation node written to.
        """
        volume = self.previewVolume(previewNode)
        if segmentationNode is None:
            segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume.GetName()} atlas")
            segmentationNode.CreateDefaultDisplayNodes()
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        elif segmentationNode.GetParentTransformNode() is not None:
            raise ValueError(f"Segmentation '{segmentationNode.GetName()}' is under a transform: harden the transform first")
        source, target = previewNode.GetSegmentation(), segmentationNode.GetSegmentation()
        with self.scene.temporarySceneNodes():
            for index in range(source.GetNumberOfSegments()):
                sourceId = source.GetNthSegmentID(index)
                segment = source.GetSegment(sourceId)
                mask = slicer.util.arrayFromSegmentBinaryLabelmap(previewNode, sourceId, volume)
                targetId = target.GetSegmentIdBySegmentName(segment.GetName())
                if not targetId:
                    targetId = target.AddEmptySegment("", segment.GetName(), segment.GetColor())
                terminology = self.scene.segmentTerminology(segment)
                if terminology and not self.scene.segmentTerminology(target.GetSegment(targetId)):
                    target.GetSegment(targetId).SetTag(segment.GetTerminologyEntryTagName(), terminology)
                slicer.util.updateSegmentBinaryLabelmapFromArray(
                    (np.asarray(mask) > 0).astype(np.uint8), segmentationNode, targetId, volume)
        self.scene.removePreview(previewNode)
        return segmentationNode

    # Create ------------------------------------------------------------------------------------

    def startCreate(self, volumeNode, segmentationNode, bundle: str, name: Optional[str] = None,
                    modality: Optional[str] = None):
        """Start ``samfewshot atlas create`` making the bundle ``bundle`` (``.zip`` or a folder)
        from ``volumeNode`` and every segment of ``segmentationNode`` (names, colours and
        terminology kept)."""
        self.scene.checkInputs(volumeNode)
        with self.jobs.jobFolder() as folder:
            imagePath = os.path.join(folder, "atlas_image.nrrd")
            labelsPath = os.path.join(folder, "atlas_labels.seg.nrrd")
            argv = atlas_commands.atlas_create_command(
                self.jobs.pythonExecutable(), imagePath, labelsPath, bundle, name=name, modality=modality)
            self.scene.exportVolume(volumeNode, imagePath)
            self.scene.exportSegmentationLabels(volumeNode, segmentationNode, labelsPath)
            return self.jobs.startJob("atlas create", argv, folder, volumeNode=volumeNode, outputPath=os.fspath(bundle))

    def finishCreate(self, job) -> str:
        """The path of the bundle a finished create job wrote."""
        with self.jobs.finishedJob(job, "atlas create"):
            return job.outputPath
