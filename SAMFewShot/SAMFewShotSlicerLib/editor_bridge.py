"""The Segment Editor and the slice views, as the module panel and the Propagate effect use them.

- :func:`applyPreview` writes a propagation preview into its segment through a Segment Editor
  effect (``modifySegmentByLabelmap``), so the editor's masking (editable area, editable intensity
  range, overwrite other segments) is honoured, as one undo step when the editor shows that
  segmentation. The editor's segmentation is never switched (that would deactivate the user's
  active effect).
- :func:`jumpToSlice` shows a slice in the view that pages along its axis (Red, Yellow or Green)
  and :func:`sliceText` names it by Slicer's slice offset in mm.
"""

import vtk

import slicer
from SAMFewShotLib.slicer_support import slice_views

#: Name the Propagate effect is registered under (SegmentEditorPropagate/SegmentEditorEffect.py).
PROPAGATE_EFFECT_NAME = "Propagate"


def segmentEditorWidget():
    """The Segment Editor module's qMRMLSegmentEditorWidget."""
    return slicer.util.getModuleWidget("SegmentEditor").editor


def editorShows(segmentationNode) -> bool:
    """Whether the Segment Editor edits ``segmentationNode`` now (its undo history is that one's)."""
    return segmentEditorWidget().segmentationNode() is segmentationNode


def saveUndoStateIfShown(segmentationNode) -> bool:
    """Record the undo state when the editor shows ``segmentationNode``; returns whether it did
    (the editor's segmentation is never switched)."""
    if not editorShows(segmentationNode):
        return False
    segmentEditorWidget().saveStateForUndo()
    return True


def applyPreview(labelmaps, segmentationNode, segmentId: str, effect=None) -> bool:
    """Write ``labelmaps`` (vtkOrientedImageData parts of a preview; their union is the result)
    into segment ``segmentId`` honouring the Segment Editor's masking and overwrite settings.

    Args:
        effect: the effect whose ``modifySegmentByLabelmap`` is used (the Propagate effect's own
            ``scriptedEffect`` inside the editor); None: the editor's registered Propagate effect.

    Returns:
        True when it is one undo step of the Segment Editor (the effect's editor shows that
        segmentation; otherwise it is written without an undo state, never by switching it).
    """
    if effect is None:
        effect = segmentEditorWidget().effectByName(PROPAGATE_EFFECT_NAME)
        if effect is None:
            raise RuntimeError("The Propagate effect is not registered in the Segment Editor: restart Slicer")
    parameterSetNode = effect.parameterSetNode()
    if parameterSetNode is None:
        raise RuntimeError("The Segment Editor has no parameter node yet: open the Segment Editor once")
    undoable = parameterSetNode.GetSegmentationNode() is segmentationNode
    if undoable:
        effect.saveStateForUndo()
    first = True
    for labelmap in labelmaps:
        if labelmap.IsEmpty() and not first:
            continue
        mode = (slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet if first
                else slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeAdd)
        effect.modifySegmentByLabelmap(segmentationNode, segmentId, labelmap, mode)
        first = False
    return undoable


def ijkToRas(volumeNode) -> list:
    """The volume's IJKToRAS matrix as nested lists (4 x 4)."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return [[matrix.GetElement(row, column) for column in range(4)] for row in range(4)]


def sliceText(volumeNode, numpyAxis: int, index: int) -> str:
    """``"Red S 12.5 mm"``: the view and Slicer's slice offset of slice ``index`` (never an index)."""
    matrix = ijkToRas(volumeNode)
    dimensions = volumeNode.GetImageData().GetDimensions()
    offset = slice_views.slice_offset_mm(matrix, dimensions, numpyAxis, index)
    return f"{slice_views.view_for_axis(matrix, numpyAxis)} {slice_views.format_offset(matrix, numpyAxis, offset)}"


def jumpToSlice(volumeNode, numpyAxis: int, index: int):
    """Show slice ``index`` along ``numpyAxis`` in the view that pages along that axis; returns
    the view name (None without a layout)."""
    layoutManager = slicer.app.layoutManager()
    if volumeNode is None or layoutManager is None or numpyAxis is None:
        return None
    matrix = ijkToRas(volumeNode)
    view = slice_views.view_for_axis(matrix, int(numpyAxis))
    r, a, s = slice_views.slice_center_ras(matrix, volumeNode.GetImageData().GetDimensions(), int(numpyAxis), int(index))
    sliceWidget = layoutManager.sliceWidget(view)
    if sliceWidget is not None:
        sliceWidget.mrmlSliceNode().JumpSliceByOffsetting(r, a, s)
    return view
