"""The Propagate slices section of the module: choose the drawn segment, the engine and the
device, suggest slices (listed by slice offset in mm), propagate in the background (SAM: the
encoder estimate shown first) and hand the result to the Preview section.

The same propagation runs inside the Segment Editor as the Propagate effect
(SegmentEditorPropagate/SegmentEditorEffect.py); this panel keeps the full options.
"""

import qt
import slicer

from SAMFewShotLib.slicer_support import commands
from SAMFewShotLib.slicer_support.selection import consistent_segment_id

from . import editor_bridge
from .engine_choices import DEVICE_CHOICES, ENGINE_CHOICES, deviceProblem, engineFamily
from .job_monitor import JobMonitor
from .module_panel import ModulePanel
from .sam_on_cpu import confirmSamRunOnCpu, showEncoderEstimate
from .weights_logic import WEIGHTS_JOB_KINDS


class PropagationPanel(ModulePanel):
    """Widget side of propagation (state in the parameter node, work in ``logic.propagation``).
    Its JobMonitor also runs the weights jobs of the Model row."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.suggestion = None  # {"numpy_axis", "slices"} of the last Suggest slices

    def setup(self) -> None:
        self.monitor = JobMonitor(self.logic.jobs, self.ui.progressBar, self.ui.statusLabel, self.ui.elapsedLabel,
                                  self.finish, self.widget.updateGuiFromParameterNode, onOutput=self.showChildLog)
        self.ui.segmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.engineComboBox.connect("currentIndexChanged(int)", self.onEngineChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.metaInitPathLineEdit.connect("currentPathChanged(QString)", self.onMetaInitChanged)
        self.ui.suggestButton.connect("clicked(bool)", self.onSuggest)
        self.ui.suggestedSlicesList.connect("currentRowChanged(int)", self.onSuggestedSliceSelected)
        self.ui.propagateButton.connect("clicked(bool)", self.onPropagate)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.populateDevices()
        self.populateEngines()

    # GUI state ---------------------------------------------------------------------------------

    def updateGui(self, parameterNode, running: bool) -> None:
        """Widgets connectGui does not bind, and the enabled state of every button."""
        self.ui.cancelButton.enabled = running
        if parameterNode is None:
            for button in (self.ui.propagateButton, self.ui.suggestButton):
                button.enabled = False
            return
        if self.ui.segmentSelector.currentNode() != parameterNode.segmentationNode:
            self.ui.segmentSelector.setCurrentNode(parameterNode.segmentationNode)
        if parameterNode.segmentId and self.ui.segmentSelector.currentSegmentID() != parameterNode.segmentId:
            self.ui.segmentSelector.setCurrentSegmentID(parameterNode.segmentId)
        for combo, value in (
            (self.ui.engineComboBox, parameterNode.engine),
            (self.ui.modelComboBox, parameterNode.checkpoint),
            (self.ui.deviceComboBox, parameterNode.device),
        ):
            index = combo.findData(value)
            if index >= 0 and index != combo.currentIndex:
                combo.currentIndex = index
        if self.ui.metaInitPathLineEdit.currentPath != parameterNode.metaInit:
            self.ui.metaInitPathLineEdit.currentPath = parameterNode.metaInit
        family = engineFamily(parameterNode.engine)
        samReady = self.logic.packages.samReady()
        self.ui.modelComboBox.enabled = samReady and bool(self.widget.weightsPanel.checkpoints)
        self.ui.deviceComboBox.enabled = family in commands.WEIGHTED_ENGINES
        self.ui.metaInitPathLineEdit.enabled = family in commands.INIT_ENGINES
        problem = self.propagationProblem()
        self.ui.propagateButton.enabled = problem is None and not running
        self.ui.propagateButton.toolTip = problem or (
            "Propagate the drawn slices to the whole volume. The result is shown as a preview; "
            "the segment changes only on Accept. In the Segment Editor, the Propagate effect does the same.")
        self.ui.suggestButton.enabled = parameterNode.inputVolume is not None and not running

    def engineNeeds(self, engine: str):
        """What ``engine`` still needs (PyTorch, a checkpoint) as tooltip text, or None."""
        return commands.engine_requirements(
            engine, self.logic.packages.torchAvailable(), self.widget.weightsPanel.checkpoints
        )

    def propagationProblem(self):
        """Why Propagate cannot run now (tooltip text), or None."""
        parameterNode = self.widget.parameterNode()
        if parameterNode is None:
            return "No parameter node."
        if parameterNode.inputVolume is None:
            return "Select the input volume."
        if parameterNode.segmentationNode is None or not parameterNode.segmentId:
            return "Select the segment drawn on a few slices."
        try:
            need = self.engineNeeds(parameterNode.engine)
        except ValueError as error:
            return str(error)
        return None if need is None else f"Engine {parameterNode.engine}: {need}."

    @staticmethod
    def disableItem(combo, index: int) -> None:
        """Grey a combo box entry out (QComboBox's model is a QStandardItemModel)."""
        itemOf = getattr(combo.model(), "item", None)
        item = itemOf(index) if itemOf is not None else None
        if item is not None:
            item.setEnabled(False)

    def populateEngines(self) -> None:
        """Fill the Engine combo box; engines that cannot run yet are disabled with the reason as tooltip."""
        combo = self.ui.engineComboBox
        wasBlocked = combo.blockSignals(True)
        try:
            combo.clear()
            for index, (engine, description) in enumerate(ENGINE_CHOICES):
                combo.addItem(engine, engine)
                need = self.engineNeeds(engine)
                combo.setItemData(index, description if need is None else f"{description} - {need}", qt.Qt.ToolTipRole)
                if need is not None:
                    self.disableItem(combo, index)
            parameterNode = self.widget.parameterNode()
            index = combo.findData(parameterNode.engine if parameterNode else "auto")
            combo.currentIndex = index if index >= 0 else 0
        finally:
            combo.blockSignals(wasBlocked)

    def populateDevices(self) -> None:
        """auto / CPU / CUDA / MPS; a device the command cannot use yet is disabled with the reason."""
        combo = self.ui.deviceComboBox
        wasBlocked = combo.blockSignals(True)
        try:
            combo.clear()
            for index, (label, device) in enumerate(DEVICE_CHOICES):
                combo.addItem(label, device)
                problem = deviceProblem(device)
                combo.setItemData(index, problem or f"Run the SAM engines on {label}", qt.Qt.ToolTipRole)
                if problem is not None:
                    self.disableItem(combo, index)
        finally:
            combo.blockSignals(wasBlocked)

    def showChildLog(self, job) -> None:
        """The child's latest output lines in the collapsible log (only when they changed)."""
        text = "\n".join(list(job.runner.stderr_lines)[-200:] + list(job.runner.stdout_lines)[-20:])
        if self.ui.childLogTextEdit.toPlainText() != text:
            self.ui.childLogTextEdit.setPlainText(text)

    def volume(self):
        parameterNode = self.widget.parameterNode()
        return parameterNode.inputVolume if parameterNode else None

    # Handlers: selections ----------------------------------------------------------------------

    def storeSegmentSelection(self) -> None:
        """Store the selector's (segmentation, segment) pair at once, the segment only when it is
        one of that segmentation's (the selector signals the segment before the segmentation)."""
        node = self.ui.segmentSelector.currentNode()
        segmentIds = []
        if node is not None:
            segmentation = node.GetSegmentation()
            segmentIds = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        parameterNode = self.widget.parameterNode()
        with slicer.util.NodeModify(parameterNode):
            parameterNode.segmentationNode = node
            parameterNode.segmentId = consistent_segment_id(segmentIds, self.ui.segmentSelector.currentSegmentID())

    def onSegmentationChanged(self, node) -> None:
        if self.widget.updatingGui or self.widget.parameterNode() is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the segmentation."):
            self.storeSegmentSelection()

    def onSegmentChanged(self, segmentId) -> None:
        if self.widget.updatingGui or self.widget.parameterNode() is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the segment."):
            self.storeSegmentSelection()
        showEncoderEstimate(self)

    def storeComboValue(self, combo, field: str, index: int) -> None:
        if self.widget.updatingGui or self.widget.parameterNode() is None or index < 0:
            return
        setattr(self.widget.parameterNode(), field, combo.itemData(index) or "")

    def onEngineChanged(self, index) -> None:
        with slicer.util.tryWithErrorDisplay("Could not select the engine."):
            self.storeComboValue(self.ui.engineComboBox, "engine", index)
        showEncoderEstimate(self)

    def onDeviceChanged(self, index) -> None:
        with slicer.util.tryWithErrorDisplay("Could not select the device."):
            self.storeComboValue(self.ui.deviceComboBox, "device", index)
        showEncoderEstimate(self)

    def onModelChanged(self, index) -> None:
        with slicer.util.tryWithErrorDisplay("Could not select the model."):
            self.storeComboValue(self.ui.modelComboBox, "checkpoint", index)
        showEncoderEstimate(self)

    def onMetaInitChanged(self, path) -> None:
        if self.widget.updatingGui or self.widget.parameterNode() is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the meta init file."):
            self.widget.parameterNode().metaInit = path or ""

    def onSuggestedSliceSelected(self, row) -> None:
        if self.suggestion is None or not 0 <= row < len(self.suggestion["slices"]):
            return
        with slicer.util.tryWithErrorDisplay("Could not show the suggested slice."):
            editor_bridge.jumpToSlice(self.volume(), self.suggestion["numpy_axis"], self.suggestion["slices"][row])

    # Handlers: jobs ----------------------------------------------------------------------------

    def onSuggest(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start Suggest slices.", waitCursor=True):
            if not self.widget.packagesPanel.setupPythonRequirements(sam=False):
                return
            parameterNode = self.widget.parameterNode()
            axis = "axial" if parameterNode.axis == "auto" else parameterNode.axis
            job = self.logic.propagation.startSuggestion(
                parameterNode.inputVolume, parameterNode.suggestCount, axis=axis
            )
            self.ui.suggestedSlicesList.clear()
            self.suggestion = None
            self.monitor.start(job)

    def onPropagate(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start the propagation.", waitCursor=True):
            parameterNode = self.widget.parameterNode()
            if not self.widget.packagesPanel.setupPythonRequirements(
                    sam=engineFamily(parameterNode.engine) in commands.WEIGHTED_ENGINES):
                return
            if not confirmSamRunOnCpu(self.logic, self.widget.weightsPanel.rows, parameterNode):
                self.ui.statusLabel.text = (
                    f"Engine set to {parameterNode.engine} (seconds, no weights): click Propagate."
                )
                return
            job = self.logic.propagation.start(
                parameterNode.inputVolume, parameterNode.segmentationNode, parameterNode.segmentId,
                engine=parameterNode.engine, checkpoint=parameterNode.checkpoint or None, axis=parameterNode.axis,
                init=parameterNode.metaInit or None, device=parameterNode.device,
            )
            self.monitor.start(job)

    def finish(self, job) -> None:
        """Read a finished job of the section (propagate, suggest or weights)."""
        if job.kind in WEIGHTS_JOB_KINDS:
            self.widget.weightsPanel.finish(job)
        elif job.kind == "suggest":
            self.finishSuggestion(job)
        else:
            self.widget.previewPanel.show(self.logic.propagation.finish(job))

    def finishSuggestion(self, job) -> None:
        self.suggestion = self.logic.propagation.finishSuggestion(job)
        volume = self.volume()
        for index in self.suggestion["slices"]:
            self.ui.suggestedSlicesList.addItem(editor_bridge.sliceText(volume, self.suggestion["numpy_axis"], index))
        if self.suggestion["slices"]:
            self.ui.suggestedSlicesList.setCurrentRow(0)  # shows the first one in its slice view
        self.ui.statusLabel.text = (
            f"Draw the structure on these {len(self.suggestion['slices'])} slices (click one to show it)."
        )

    def onCancel(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not cancel.", waitCursor=True):
            self.monitor.cancel()

