"""The Result preview section of the module: the propagated segment shown as drawn slices
(filled), propagated voxels (outlined) and low-confidence slices (orange); per-slice confidence by
Slicer's slice offset in mm (never an array index); "Next low-confidence slice" jumps the view of
the annotated axis (Red, Yellow or Green); Accept writes it through the Segment Editor, honouring
its masking, as one Undo step; Reject removes it.
"""

import slicer

from SAMFewShotLib.slicer_support import progress_lines, slice_views
from SAMFewShotLib.slicer_support.report_summary import expected_dice_text, summarize_report

from . import editor_bridge
from .module_panel import ModulePanel


class PreviewPanel(ModulePanel):
    """Widget side of the propagation preview (the preview node is in the parameter node)."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.previewAxis = None
        self.previewSlices = []  # slice indices listed in sliceConfidenceList
        self.lowSlices = []  # low-confidence slices of the preview (ascending)
        self.currentLowSlice = None

    def setup(self) -> None:
        self.ui.acceptButton.connect("clicked(bool)", self.onAccept)
        self.ui.rejectButton.connect("clicked(bool)", self.onReject)
        self.ui.sliceConfidenceList.connect("currentRowChanged(int)", self.onConfidenceSliceSelected)
        self.ui.nextLowConfidenceButton.connect("clicked(bool)", self.onNextLowConfidence)

    def updateGui(self, parameterNode, running: bool) -> None:
        hasPreview = parameterNode is not None and parameterNode.previewSegmentation is not None
        self.ui.acceptButton.enabled = hasPreview and not running
        self.ui.rejectButton.enabled = hasPreview and not running
        self.ui.nextLowConfidenceButton.enabled = hasPreview and bool(self.lowSlices)

    def volume(self):
        parameterNode = self.widget.parameterNode()
        return parameterNode.inputVolume if parameterNode else None

    def showSummary(self, result, parts=None) -> None:
        """Expected Dice of the structure (or why there is none), per-slice confidence by slice offset,
        low-confidence slices (None clears)."""
        self.ui.sliceConfidenceList.clear()
        self.previewSlices, self.lowSlices, self.currentLowSlice = [], [], None
        self.previewAxis = None
        if result is None:
            self.ui.previewSummaryLabel.text = "No preview."
            self.ui.expectedDiceLabel.text = ""
            return
        _expectedDice, slices = summarize_report(result.report)
        self.previewAxis = result.axis
        self.lowSlices = list(parts.low_slices) if parts is not None else []
        self.ui.previewSummaryLabel.text = (
            f"Preview of '{result.segmentName}' ({result.engine}, {progress_lines.format_elapsed(result.seconds)}): "
            "drawn "
            f"slices filled, propagated voxels outlined, {len(self.lowSlices)} low-confidence slice(s) in orange. "
            "Accept writes it into the segment (Segment Editor masking applies), Reject removes it.")
        self.ui.expectedDiceLabel.text = expected_dice_text(result.report, result.segmentName)
        for index, confidence in slices:
            flag = "  LOW" if index in self.lowSlices else ""
            self.ui.sliceConfidenceList.addItem(
                f"{editor_bridge.sliceText(result.volumeNode, self.previewAxis, index)}: confidence "
                f"{confidence:.2f}{flag}")
            self.previewSlices.append(index)

    def show(self, result) -> None:
        """Replace the preview by a finished propagation's (drawn / propagated / low-confidence)."""
        parameterNode = self.widget.parameterNode()
        oldPreview = parameterNode.previewSegmentation
        preview, parts = self.logic.propagation.createPreview(result, self.ui.confidenceThresholdSpinBox.value)
        if oldPreview is not None:
            self.logic.scene.removePreview(oldPreview)
        self.showSummary(result, parts)  # first: the buttons follow the parameter node's change
        parameterNode.previewSegmentation = preview
        self.ui.previewCollapsibleButton.collapsed = False
        elapsed = progress_lines.format_elapsed(result.seconds)
        self.ui.statusLabel.text = f"Done in {elapsed}: review the preview, then Accept or Reject."

    def onConfidenceSliceSelected(self, row) -> None:
        if not 0 <= row < len(self.previewSlices):
            return
        with slicer.util.tryWithErrorDisplay("Could not show the slice."):
            editor_bridge.jumpToSlice(self.volume(), self.previewAxis, self.previewSlices[row])

    def onNextLowConfidence(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not show the next low-confidence slice."):
            self.currentLowSlice = slice_views.next_slice(self.lowSlices, self.currentLowSlice)
            if self.currentLowSlice is not None:
                view = editor_bridge.jumpToSlice(self.volume(), self.previewAxis, self.currentLowSlice)
                where = editor_bridge.sliceText(self.volume(), self.previewAxis, self.currentLowSlice)
                self.ui.statusLabel.text = (f"Low-confidence slice {where} shown in the {view} view: "
                                            "correct it in the Segment Editor, then Propagate again.")

    # Handlers: preview -------------------------------------------------------------------------

    def onAccept(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not write the preview into the segment.", waitCursor=True):
            parameterNode = self.widget.parameterNode()
            preview = parameterNode.previewSegmentation
            if preview is None:
                raise ValueError("There is no preview to accept")
            _volume, segmentationNode, segmentId = self.logic.propagation.previewTarget(preview)
            undoable = editor_bridge.applyPreview(
                self.logic.propagation.previewLabelmaps(preview), segmentationNode, segmentId
            )
            self.logic.scene.removePreview(preview)
            parameterNode.previewSegmentation = None
            self.showSummary(None)
            segmentName = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
            self.ui.statusLabel.text = f"Written into '{segmentName}' with the Segment Editor's masking" + (
                " (Segment Editor: Undo reverts it)." if undoable else
                " (the Segment Editor shows another segmentation, so its Undo does not cover this).")

    def onReject(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not remove the preview.", waitCursor=True):
            parameterNode = self.widget.parameterNode()
            if parameterNode.previewSegmentation is not None:
                self.logic.scene.removePreview(parameterNode.previewSegmentation)
            parameterNode.previewSegmentation = None
            self.showSummary(None)
            self.ui.statusLabel.text = "Preview removed; the segment is unchanged."
