"""The "Propagate" Segment Editor effect: draw a structure on a few slices, Initialize, review the
preview, Apply; all inside the Segment Editor, as Fill between slices works.

Registered by the SAMFewShot module at startup (``registerPropagateEffect``: the
SegmentEditorExtraEffects way); it lives in this subfolder because Slicer loads every ``.py`` file
beside SAMFewShot.py as a module. It works on the editor's selected segment, source volume and
masking:

- Initialize runs ``samfewshot propagate`` in a background child (progress, Cancel), then shows a
  preview segmentation: the drawn slices filled, the propagated voxels outlined, slices under the
  confidence threshold in orange, listed by their slice offset in mm, with the expected Dice (auto);
- correcting a slice of the segment re-runs it after a short pause and updates the preview;
- "Next low-confidence slice" jumps the view of the annotated axis (Red, Yellow or Green) there;
- Apply writes the preview into the segment with ``modifySegmentByLabelmap`` (editable area,
  editable intensity range and overwrite settings honoured) as one Undo step; Cancel removes it.

Options live in the effect's parameters (Engine, ConfidenceThreshold), not in module globals.
"""

import os
import sys

import qt
import slicer
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

_MODULE_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _MODULE_FOLDER not in sys.path:
    sys.path.append(_MODULE_FOLDER)

from SAMFewShotSlicerLib import editor_bridge, lib_folder  # noqa: E402, F401  (lib_folder: SAMFewShotLib on sys.path)
from SAMFewShotSlicerLib.child_jobs import ChildJobs  # noqa: E402
from SAMFewShotSlicerLib.engine_choices import ENGINE_CHOICES, engineFamily  # noqa: E402
from SAMFewShotSlicerLib.packages_panel import ensurePythonRequirements  # noqa: E402
from SAMFewShotSlicerLib.propagation_logic import PropagationLogic  # noqa: E402
from SAMFewShotSlicerLib.python_packages import PythonPackages  # noqa: E402
from SAMFewShotSlicerLib.scene_exchange import SceneExchange  # noqa: E402

from SAMFewShotLib.slicer_support import commands, preview_parts, progress_lines, slice_views  # noqa: E402
from SAMFewShotLib.slicer_support.report_summary import expected_dice_text  # noqa: E402

#: Engines the effect offers: those that need no checkpoint (the module panel has the SAM ones).
EFFECT_ENGINES = [name for name, _description in ENGINE_CHOICES if engineFamily(name) in commands.WEIGHTLESS_ENGINES]
#: Seconds after the last edit of the segment before the preview is recomputed.
AUTO_UPDATE_DELAY_SECONDS = 1.0
#: How often the running child is polled (milliseconds).
POLL_INTERVAL_MS = 200


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    """Propagate the selected segment from its drawn slices, with a preview (see the module docstring)."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = editor_bridge.PROPAGATE_EFFECT_NAME  # not translated: modules find effects by name
        if hasattr(scriptedEffect, "title"):  # Slicer 5.8+ shows a translatable title
            scriptedEffect.title = "Propagate"
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.jobs = ChildJobs()
        self.scene = SceneExchange()
        self.packages = PythonPackages()
        self.propagation = PropagationLogic(self.jobs, self.scene)
        self.job = None
        self.previewNode = None
        self.result = None
        self.lowSlices = []
        self.currentLowSlice = None
        self.observedSegmentation = None
        self.observerTags = []
        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(POLL_INTERVAL_MS)
        self.pollTimer.connect("timeout()", self.onPoll)
        self.updateTimer = qt.QTimer()
        self.updateTimer.setSingleShot(True)
        self.updateTimer.setInterval(int(AUTO_UPDATE_DELAY_SECONDS * 1000))
        self.updateTimer.connect("timeout()", self.onInitialize)

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        iconPath = os.path.join(_MODULE_FOLDER, "Resources", "Icons", "SAMFewShot.png")
        return qt.QIcon(iconPath) if os.path.exists(iconPath) else qt.QIcon()

    def helpText(self):
        return """<html>Propagate the selected segment from a few drawn slices to the whole volume.<br>
<p><ul><li>Draw the structure on 1-10 slices (any effect), leaving slices between them.
<li><b>Initialize</b> computes the preview in the background: drawn slices filled, propagated voxels
outlined, low-confidence slices in orange. Correct a slice and the preview updates.
<li><b>Next low-confidence slice</b> shows where to correct first.
<li><b>Apply</b> writes the preview with the editor's masking settings (one Undo step); <b>Cancel</b> removes it.
</ul>The SAM Few-Shot module has the SAM engines, atlases and batches.</html>"""

    def setupOptionsFrame(self):
        self.engineComboBox = qt.QComboBox()
        for engine in EFFECT_ENGINES:
            self.engineComboBox.addItem(engine, engine)
        self.engineComboBox.setToolTip(
            "How the drawn slices are propagated (auto: picked per structure by validation)."
        )
        self.scriptedEffect.addLabeledOptionsWidget("Engine:", self.engineComboBox)

        self.thresholdSpinBox = qt.QDoubleSpinBox()
        self.thresholdSpinBox.setRange(0.0, 1.0)
        self.thresholdSpinBox.setSingleStep(0.05)
        self.thresholdSpinBox.setToolTip("Predicted slices below this confidence are shown in orange.")
        self.scriptedEffect.addLabeledOptionsWidget("Low confidence below:", self.thresholdSpinBox)

        self.initializeButton = qt.QPushButton("Initialize")
        self.initializeButton.objectName = self.__class__.__name__ + "Initialize"
        self.initializeButton.setToolTip("Propagate the drawn slices in the background and show a preview.")
        self.stopButton = qt.QPushButton("Stop")
        self.stopButton.setToolTip("Stop the running propagation (the segment is not changed).")
        runFrame = qt.QHBoxLayout()
        runFrame.addWidget(self.initializeButton)
        runFrame.addWidget(self.stopButton)
        self.scriptedEffect.addOptionsWidget(runFrame)

        self.progressBar = qt.QProgressBar()
        self.progressBar.setRange(0, 100)
        self.statusLabel = qt.QLabel("Draw the structure on a few slices, then Initialize.")
        self.statusLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.progressBar)
        self.scriptedEffect.addOptionsWidget(self.statusLabel)
        self.expectedDiceLabel = qt.QLabel("")
        self.expectedDiceLabel.wordWrap = True
        self.expectedDiceLabel.setToolTip("auto checks each drawn slice against the others and estimates the Dice.")
        self.scriptedEffect.addOptionsWidget(self.expectedDiceLabel)

        self.lowConfidenceList = qt.QListWidget()
        self.lowConfidenceList.setToolTip("Low-confidence slices by slice offset (mm); click one to show it.")
        self.nextLowButton = qt.QPushButton("Next low-confidence slice")
        self.nextLowButton.setToolTip("Show the next low-confidence slice in the view of the annotated axis.")
        self.scriptedEffect.addOptionsWidget(self.lowConfidenceList)
        self.scriptedEffect.addOptionsWidget(self.nextLowButton)

        self.cancelButton = qt.QPushButton("Cancel")
        self.cancelButton.objectName = self.__class__.__name__ + "Cancel"
        self.cancelButton.setToolTip("Remove the preview; the segment stays as it was.")
        self.applyButton = qt.QPushButton("Apply")
        self.applyButton.objectName = self.__class__.__name__ + "Apply"
        self.applyButton.setToolTip("Write the preview into the segment (editor masking applies; one Undo step).")
        finishFrame = qt.QHBoxLayout()
        finishFrame.addWidget(self.cancelButton)
        finishFrame.addWidget(self.applyButton)
        self.scriptedEffect.addOptionsWidget(finishFrame)

        self.initializeButton.connect("clicked()", self.onInitialize)
        self.stopButton.connect("clicked()", self.onStop)
        self.cancelButton.connect("clicked()", self.onCancel)
        self.applyButton.connect("clicked()", self.onApply)
        self.nextLowButton.connect("clicked()", self.onNextLowConfidence)
        self.lowConfidenceList.connect("currentRowChanged(int)", self.onLowConfidenceSelected)
        self.engineComboBox.connect("currentIndexChanged(int)", self.updateMRMLFromGUI)
        self.thresholdSpinBox.connect("valueChanged(double)", self.updateMRMLFromGUI)

    def cleanup(self):
        self.pollTimer.disconnect("timeout()", self.onPoll)
        self.updateTimer.disconnect("timeout()", self.onInitialize)

    def createCursor(self, widget):
        return slicer.util.mainWindow().cursor  # no effect-specific cursor

    def setMRMLDefaults(self):
        self.scriptedEffect.setParameterDefault("Engine", "auto")
        self.scriptedEffect.setParameterDefault("ConfidenceThreshold", str(preview_parts.DEFAULT_CONFIDENCE_THRESHOLD))

    def updateGUIFromMRML(self):
        engine = self.scriptedEffect.parameter("Engine")
        index = self.engineComboBox.findData(engine)
        wasBlocked = self.engineComboBox.blockSignals(True)
        self.engineComboBox.currentIndex = max(index, 0)
        self.engineComboBox.blockSignals(wasBlocked)
        wasBlocked = self.thresholdSpinBox.blockSignals(True)
        self.thresholdSpinBox.value = self.scriptedEffect.doubleParameter("ConfidenceThreshold")
        self.thresholdSpinBox.blockSignals(wasBlocked)
        running = self.job is not None
        hasPreview = self.previewNode is not None and self.previewNode.GetScene() is not None
        self.initializeButton.text = "Update" if hasPreview else "Initialize"
        self.initializeButton.enabled = not running
        self.stopButton.enabled = running
        self.applyButton.enabled = hasPreview and not running
        self.cancelButton.enabled = hasPreview or running
        self.nextLowButton.enabled = hasPreview and bool(self.lowSlices)

    def updateMRMLFromGUI(self):
        self.scriptedEffect.setParameter(
            "Engine", self.engineComboBox.itemData(self.engineComboBox.currentIndex) or "auto"
        )
        self.scriptedEffect.setParameter("ConfidenceThreshold", self.thresholdSpinBox.value)

    def deactivate(self):
        self.observeSegmentation(False)  # a running job keeps running; its preview stays until Apply/Cancel

    # Inputs ------------------------------------------------------------------------------------

    def inputs(self):
        """(source volume, segmentation node, selected segment ID) of the editor."""
        parameterSetNode = self.scriptedEffect.parameterSetNode()
        if parameterSetNode is None:
            return None, None, None
        getSourceVolume = getattr(parameterSetNode, "GetSourceVolumeNode", None) or parameterSetNode.GetMasterVolumeNode
        return getSourceVolume(), parameterSetNode.GetSegmentationNode(), parameterSetNode.GetSelectedSegmentID()

    def observeSegmentation(self, enabled: bool) -> None:
        """Recompute the preview when the user edits the segmentation (as Fill between slices)."""
        import vtkSegmentationCorePython as vtkSegmentationCore

        _volume, segmentationNode, _segmentId = self.inputs()
        segmentation = segmentationNode.GetSegmentation() if (enabled and segmentationNode) else None
        if segmentation is self.observedSegmentation:
            return
        if self.observedSegmentation is not None:
            for tag in self.observerTags:
                self.observedSegmentation.RemoveObserver(tag)
        self.observerTags, self.observedSegmentation = [], segmentation
        if segmentation is not None:
            for event in (vtkSegmentationCore.vtkSegmentation.SegmentModified,
                          vtkSegmentationCore.vtkSegmentation.SourceRepresentationModified):
                self.observerTags.append(segmentation.AddObserver(event, self.onSegmentationModified))

    def onSegmentationModified(self, caller, event):
        if self.previewNode is not None:
            self.updateTimer.start()  # restarted by every edit: runs once the user pauses

    # Handlers ----------------------------------------------------------------------------------

    def onInitialize(self):
        with slicer.util.tryWithErrorDisplay("Propagate could not start.", waitCursor=True):
            if self.job is not None:
                self.jobs.cancelJob(self.job)
                self.job = None
            if not ensurePythonRequirements(self.packages, sam=False, showStatus=self.showStatus):
                return
            volume, segmentationNode, segmentId = self.inputs()
            self.job = self.propagation.start(
                volume, segmentationNode, segmentId, engine=self.scriptedEffect.parameter("Engine")
            )
            self.progressBar.value = 0
            self.pollTimer.start()
            self.updateGUIFromMRML()

    def showStatus(self, text: str) -> None:
        self.statusLabel.text = text

    def onPoll(self):
        job = self.job
        if job is None:
            self.pollTimer.stop()
            return
        with slicer.util.tryWithErrorDisplay("Propagate failed."):
            try:
                self.jobs.pollJob(job)
                value = int(round(100 * job.runner.tracker.fraction()))
                if self.progressBar.value != value:
                    self.progressBar.value = value
                status = f"{job.engine}: {job.runner.tracker.status_text()}"
                if self.statusLabel.text != status:
                    self.statusLabel.text = status
                if job.running:
                    return
                self.job = None
                self.pollTimer.stop()
                self.showResult(self.propagation.finish(job))
            finally:
                if self.job is None:
                    self.pollTimer.stop()
                    self.updateGUIFromMRML()

    def showResult(self, result) -> None:
        """Replace the preview by ``result``'s drawn / propagated / low-confidence parts."""
        oldPreview = self.previewNode
        threshold = self.scriptedEffect.doubleParameter("ConfidenceThreshold")
        self.previewNode, parts = self.propagation.createPreview(result, threshold)
        self.scene.removePreview(oldPreview)
        self.result, self.lowSlices, self.currentLowSlice = result, list(parts.low_slices), None
        self.lowConfidenceList.clear()
        for index in self.lowSlices:
            self.lowConfidenceList.addItem(editor_bridge.sliceText(result.volumeNode, result.axis, index))
        self.progressBar.value = 100
        self.statusLabel.text = (f"Preview ({result.engine}, {progress_lines.format_elapsed(result.seconds)}): "
                                 f"{len(self.lowSlices)} low-confidence slice(s). Correct a slice to update, or Apply.")
        self.expectedDiceLabel.text = expected_dice_text(result.report, result.segmentName)
        self.observeSegmentation(True)

    def onStop(self):
        with slicer.util.tryWithErrorDisplay("Could not stop the propagation."):
            if self.job is not None:
                self.jobs.cancelJob(self.job)
                self.job = None
            self.statusLabel.text = "Stopped; the segment is unchanged."
            self.updateGUIFromMRML()

    def onCancel(self):
        with slicer.util.tryWithErrorDisplay("Could not remove the preview."):
            self.updateTimer.stop()
            self.observeSegmentation(False)
            if self.job is not None:
                self.jobs.cancelJob(self.job)
                self.job = None
            self.removePreview("Preview removed; the segment is unchanged.")

    def onApply(self):
        with slicer.util.tryWithErrorDisplay("Could not write the preview into the segment.", waitCursor=True):
            self.updateTimer.stop()
            self.observeSegmentation(False)  # our own write must not trigger an update
            _volume, segmentationNode, segmentId = self.propagation.previewTarget(self.previewNode)
            editor_bridge.applyPreview(self.propagation.previewLabelmaps(self.previewNode), segmentationNode, segmentId,
                                       effect=self.scriptedEffect)
            self.removePreview("Written into the segment (Undo reverts it).")

    def removePreview(self, message: str) -> None:
        self.scene.removePreview(self.previewNode)
        self.previewNode, self.result, self.lowSlices = None, None, []
        self.lowConfidenceList.clear()
        self.expectedDiceLabel.text = ""
        self.statusLabel.text = message
        self.updateGUIFromMRML()

    def jumpTo(self, index: int) -> None:
        view = editor_bridge.jumpToSlice(self.result.volumeNode, self.result.axis, index)
        where = editor_bridge.sliceText(self.result.volumeNode, self.result.axis, index)
        self.statusLabel.text = f"Slice {where} shown in the {view} view."

    def onNextLowConfidence(self):
        with slicer.util.tryWithErrorDisplay("Could not show the next low-confidence slice."):
            self.currentLowSlice = slice_views.next_slice(self.lowSlices, self.currentLowSlice)
            if self.currentLowSlice is not None and self.result is not None:
                self.jumpTo(self.currentLowSlice)

    def onLowConfidenceSelected(self, row):
        if self.result is None or not 0 <= row < len(self.lowSlices):
            return
        with slicer.util.tryWithErrorDisplay("Could not show the slice."):
            self.currentLowSlice = self.lowSlices[row]
            self.jumpTo(self.currentLowSlice)
