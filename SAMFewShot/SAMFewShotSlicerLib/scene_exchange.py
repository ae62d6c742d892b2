"""The scene and the files of a ``samfewshot`` child.

Volumes are written by Slicer itself, uncompressed (``slicer.util.exportNode`` with
``useCompression`` 0: gzip of a 100 MB volume would block Slicer for seconds; LPS geometry in the
file, the node's storage node untouched). The volume's grid is taken from the node once
(:meth:`SceneExchange.volumeGeometry`: IJKToRAS matrix and dimensions, no voxel copied); segments
are written with exactly that geometry and results are read back after checking they lie on it,
so the image file is never read again on the GUI thread. Temporary nodes Slicer's helpers leave
behind are removed, so the scene only changes where the module means it to (a preview
segmentation, an accepted segment).
"""

import contextlib

import numpy as np
import vtk

import slicer


#: exportNode properties: the child's copy of the volume is written uncompressed.
UNCOMPRESSED = {"useCompression": 0}


class SceneExchange:
    """Export and import between the scene and the child's files (``logic.scene``; never
    touches widgets)."""

    @staticmethod
    def checkInputs(volumeNode, segmentationNode=None, segmentId=None) -> None:
        """Raise ValueError naming the first bad input."""
        if volumeNode is None:
            raise ValueError("Input volume is not set: select the volume the structure is drawn on")
        if volumeNode.GetImageData() is None:
            raise ValueError(f"Volume '{volumeNode.GetName()}' has no voxels")
        if volumeNode.GetParentTransformNode() is not None:
            raise ValueError(
                f"Volume '{volumeNode.GetName()}' is under the transform '{volumeNode.GetParentTransformNode().GetName()}': "
                "harden the transform first (Data module)"
            )
        if segmentationNode is None and segmentId is None:
            return
        if segmentationNode is None:
            raise ValueError("Segmentation is not set: select the segment drawn on a few slices")
        if segmentationNode.GetParentTransformNode() is not None:
            raise ValueError(
                f"Segmentation '{segmentationNode.GetName()}' is under a transform: harden the transform first"
            )
        if segmentId is not None and (not segmentId or segmentationNode.GetSegmentation().GetSegment(segmentId) is None):
            raise ValueError(f"Segment {segmentId!r} is not in segmentation '{segmentationNode.GetName()}'")

    @staticmethod
    def sceneNodeIds() -> list:
        """IDs of every node in the scene, in scene order."""
        scene = slicer.mrmlScene
        return [scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())]

    @contextlib.contextmanager
    def temporarySceneNodes(self, keepNodeIds=None):
        """Remove every node added to the scene inside the block (Slicer's export and array helpers
        may leave storage, display or color nodes), except the IDs in ``keepNodeIds`` (a set that may
        be filled inside the block). Singleton nodes are scene infrastructure and are kept."""
        before = set(self.sceneNodeIds())
        try:
            yield
        finally:
            keep = keepNodeIds if keepNodeIds is not None else set()
            added = [nodeId for nodeId in self.sceneNodeIds() if nodeId not in before and nodeId not in keep]
            for nodeId in reversed(added):
                node = slicer.mrmlScene.GetNodeByID(nodeId)
                if node is not None and not node.GetSingletonTag():
                    slicer.mrmlScene.RemoveNode(node)

    @staticmethod
    def nodeAndDependentIds(node) -> set:
        """IDs of a displayable node, its display nodes and its storage node."""
        ids = {node.GetID()}
        for index in range(node.GetNumberOfDisplayNodes()):
            displayNode = node.GetNthDisplayNode(index)
            if displayNode is not None:
                ids.add(displayNode.GetID())
        if node.GetStorageNode() is not None:
            ids.add(node.GetStorageNode().GetID())
        return ids

    def exportVolume(self, volumeNode, path: str) -> None:
        """Write the volume to ``path`` (.nrrd), uncompressed: Slicer writes the LPS geometry
        itself; exportNode leaves the node's storage node (where the scene saves it) untouched."""
        with self.temporarySceneNodes():
            if not slicer.util.exportNode(volumeNode, path, dict(UNCOMPRESSED)):
                raise RuntimeError(f"Volume '{volumeNode.GetName()}' could not be written to {path}")

    @staticmethod
    def volumeGeometry(volumeNode):
        """The volume's grid as a SAMFewShotLib Volume (LPS geometry from the node's IJKToRAS
        matrix, array of the (k, j, i) shape that copies no voxel: a broadcast zero)."""
        from SAMFewShotLib.slicer_support.coordinates import volume_from_ijk_to_ras

        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        matrix = [[ijkToRas.GetElement(row, column) for column in range(4)] for row in range(4)]
        i, j, k = volumeNode.GetImageData().GetDimensions()
        return volume_from_ijk_to_ras(np.broadcast_to(np.uint8(0), (k, j, i)), matrix)

    def segmentMask(self, volumeNode, segmentationNode, segmentId) -> np.ndarray:
        """The segment as a (k, j, i) uint8 0/1 array on the volume's voxel grid (a copy)."""
        with self.temporarySceneNodes():
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
        return (np.asarray(mask) > 0).astype(np.uint8)

    @staticmethod
    def segmentTerminology(segment) -> str:
        """The segment's Slicer terminology entry string ("" when it has none)."""
        value = vtk.reference("")
        if not segment.GetTag(segment.GetTerminologyEntryTagName(), value):
            return ""
        return str(value)

    @staticmethod
    def writeLabelsLike(labels: np.ndarray, segments, geometry, path: str) -> None:
        """Write a (k, j, i) label array with the volume's grid (``geometry``: a SAMFewShotLib
        Volume from :meth:`volumeGeometry`), so the labels lie on exactly the image grid.

        ``segments``: SAMFewShotLib Segment entries (value, name, colour, terminology), kept when
        ``path`` is a ``.seg.nrrd``; may be empty.
        """
        from SAMFewShotLib.volume import LabelVolume
        from SAMFewShotLib.volume_io import write_labels

        if tuple(labels.shape) != geometry.shape:
            raise RuntimeError(f"Label array shape {labels.shape} differs from the image shape {geometry.shape} (k, j, i)")
        write_labels(LabelVolume(geometry.with_array(np.ascontiguousarray(labels)), tuple(segments)), path)

    def exportSegmentationLabels(self, volumeNode, segmentationNode, path: str) -> None:
        """Write every segment of ``segmentationNode`` as label values 1..n (segment order; later
        segments win where they overlap) on ``volumeNode``'s grid, with names, colours and
        terminology when ``path`` is a ``.seg.nrrd``.

        Raises:
            ValueError: no segmentation, a segmentation under a transform, or no voxel in any segment.
        """
        from SAMFewShotLib.volume import Segment, label_dtype

        self.checkInputs(volumeNode, segmentationNode)
        segmentation = segmentationNode.GetSegmentation()
        segmentIds = [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
        labels, segments = None, []
        for value, segmentId in enumerate(segmentIds, start=1):
            mask = self.segmentMask(volumeNode, segmentationNode, segmentId)
            if labels is None:
                labels = np.zeros(mask.shape, label_dtype(len(segmentIds)))
            labels[mask > 0] = value
            segment = segmentation.GetSegment(segmentId)
            segments.append(Segment(value=value, name=segment.GetName(), color=tuple(segment.GetColor()),
                                    terminology=self.segmentTerminology(segment) or None))
        if labels is None or not labels.any():
            raise ValueError(f"Segmentation '{segmentationNode.GetName()}' has no voxel in any segment")
        self.writeLabelsLike(labels, segments, self.volumeGeometry(volumeNode), path)

    @staticmethod
    def readResultLabels(path: str, geometry):
        """The child's label file as a SAMFewShotLib LabelVolume (array (k, j, i), segments with
        name, colour, terminology for a .seg.nrrd), after checking it is on the volume's grid
        (``geometry`` from :meth:`volumeGeometry`: the image file is not read again).

        Raises:
            RuntimeError: the file is not on that grid.
        """
        from SAMFewShotLib.volume_io import read_labels

        labels = read_labels(path)
        if not geometry.same_grid(labels.volume):
            raise RuntimeError(f"The result {path} is not on the input volume's grid")
        return labels

    def newSegmentationFromLabels(self, name: str, volumeNode, labels: np.ndarray, segments, attributes: dict):
        """A new segmentation node ``name`` on ``volumeNode``'s geometry with one segment per
        entry of ``segments`` (SAMFewShotLib Segment: the voxels ``labels == value`` of the (k, j, i)
        array, its name, colour and terminology), shown at 35 % fill opacity, with ``attributes``
        set. Nothing else in the scene changes (also when this raises)."""
        keepNodeIds = set()
        node = None
        try:
            with self.temporarySceneNodes(keepNodeIds):
                node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
                node.CreateDefaultDisplayNodes()
                keepNodeIds.update(self.nodeAndDependentIds(node))
                node.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
                for segment in segments:
                    color = segment.color if segment.color is not None else (0.5, 0.5, 0.5)
                    segmentId = node.GetSegmentation().AddEmptySegment("", segment.display_name(), color)
                    if segment.terminology:
                        added = node.GetSegmentation().GetSegment(segmentId)
                        added.SetTag(added.GetTerminologyEntryTagName(), segment.terminology)
                    mask = (np.asarray(labels) == segment.value).astype(np.uint8)
                    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segmentId, volumeNode)
                node.GetDisplayNode().SetOpacity2DFill(0.35)
                for key, value in attributes.items():
                    node.SetAttribute(key, value)
        except BaseException:
            self.removePreview(node)
            raise
        return node

    @staticmethod
    def removePreview(previewNode) -> None:
        """Remove a preview node and its display and storage nodes (Reject); None is ignored."""
        if previewNode is None or previewNode.GetScene() is None:
            return
        scene = previewNode.GetScene()
        dependents = [previewNode.GetNthDisplayNode(index) for index in range(previewNode.GetNumberOfDisplayNodes())]
        dependents.append(previewNode.GetStorageNode())
        scene.RemoveNode(previewNode)
        for node in dependents:
            if node is not None and node.GetScene() is not None:
                scene.RemoveNode(node)
