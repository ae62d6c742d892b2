"""The One-shot atlas section of the SAMFewShot module.

Choose an atlas bundle (a ``.zip`` file, or the ``manifest.json`` of a bundle folder) and Load:
its name, modality and structures are shown (``samfewshot atlas info --json`` in a child
process). Apply runs ``samfewshot atlas apply`` on the input volume of the Propagate section as a
child process (progress, elapsed time, Cancel); the result appears as a separate preview
segmentation. Accept adds its segments (names, colours, terminology) to the chosen segmentation in
one Segment Editor undo step; Reject removes the preview and leaves the scene as it was.
"""

import qt

import slicer

from . import editor_bridge
from .job_monitor import JobMonitor
from .module_panel import ModulePanel


class AtlasPanel(ModulePanel):
    """Widget side of the atlas workflow (state in the module's parameter node, work in
    SAMFewShotLogic.atlas)."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.info = None  # AtlasInfo of the loaded bundle
        self.infoBundle = ""  # the bundle path self.info describes

    def setup(self) -> None:
        self.monitor = JobMonitor(
            self.logic.jobs, self.ui.atlasProgressBar, self.ui.atlasStatusLabel, self.ui.atlasElapsedLabel,
            self.finish, self.widget.updateGuiFromParameterNode,
        )
        self.ui.atlasBundlePathLineEdit.connect("currentPathChanged(QString)", self.onBundlePathChanged)
        self.ui.atlasLoadButton.connect("clicked(bool)", self.onLoadBundle)
        self.ui.atlasApplyButton.connect("clicked(bool)", self.onApply)
        self.ui.atlasCancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.atlasAcceptButton.connect("clicked(bool)", self.onAccept)
        self.ui.atlasRejectButton.connect("clicked(bool)", self.onReject)
        self.showInfo(None)

    # GUI state ---------------------------------------------------------------------------------

    def updateGui(self, parameterNode) -> None:
        """Path edit and button states from the parameter node (called by the widget)."""
        running = self.running
        if parameterNode is None:
            for button in (self.ui.atlasLoadButton, self.ui.atlasApplyButton, self.ui.atlasAcceptButton, self.ui.atlasRejectButton):
                button.enabled = False
            self.ui.atlasCancelButton.enabled = running
            return
        if self.ui.atlasBundlePathLineEdit.currentPath != parameterNode.atlasBundle:
            wasBlocked = self.ui.atlasBundlePathLineEdit.blockSignals(True)
            self.ui.atlasBundlePathLineEdit.currentPath = parameterNode.atlasBundle
            self.ui.atlasBundlePathLineEdit.blockSignals(wasBlocked)
        self.ui.atlasLoadButton.enabled = bool(parameterNode.atlasBundle) and not running
        problem = self.applyProblem(parameterNode)
        self.ui.atlasApplyButton.enabled = problem is None and not running
        self.ui.atlasApplyButton.toolTip = problem or (
            "Register the atlas to the input volume in a background process; the result is shown as a preview."
        )
        self.ui.atlasCancelButton.enabled = running
        hasPreview = parameterNode.atlasPreview is not None
        self.ui.atlasAcceptButton.enabled = hasPreview and not running
        self.ui.atlasRejectButton.enabled = hasPreview and not running

    def applyProblem(self, parameterNode) -> str:
        """Why Apply cannot run now (tooltip text), or None."""
        if parameterNode.inputVolume is None:
            return "Select the input volume in the Propagate section."
        if not parameterNode.atlasBundle:
            return "Choose an atlas bundle (.zip or manifest.json of a bundle folder)."
        if parameterNode.atlasRefine:
            need = self.widget.propagationPanel.engineNeeds("sam")
            if need is not None:
                return f"SAM refinement {need}."
        return None

    def showInfo(self, info) -> None:
        """The bundle's description and structures (None: nothing loaded)."""
        self.info = info
        self.ui.atlasLabelsList.clear()
        if info is None:
            self.ui.atlasInfoLabel.text = "No atlas bundle loaded: choose one and click Load."
            return
        self.ui.atlasInfoLabel.text = info.summary()
        for label in info.labels:
            item = qt.QListWidgetItem(f"{label.value}: {label.name}")
            item.setData(qt.Qt.DecorationRole, qt.QColor(*[int(round(255 * c)) for c in label.color]))
            item.setToolTip(f"Terminology: {label.terminology}" if label.terminology else "No terminology in the bundle.")
            self.ui.atlasLabelsList.addItem(item)

    # Jobs --------------------------------------------------------------------------------------

    def finish(self, job) -> None:
        """Read a finished atlas job: info fills the description; apply shows the preview."""
        parameterNode = self.widget.parameterNode()
        if job.kind == "atlas info":
            self.showInfo(self.logic.atlas.finishInfo(job))
            self.infoBundle = job.details["bundle"]
            self.ui.atlasStatusLabel.text = "Atlas bundle loaded and verified."
            return
        result = self.logic.atlas.finishApply(job)
        name = self.info.name if self.info is not None and self.infoBundle == result.bundle else "atlas"
        preview = self.logic.atlas.createPreview(result, name)
        oldPreview = parameterNode.atlasPreview
        if oldPreview is not None:
            self.logic.scene.removePreview(oldPreview)
        parameterNode.atlasPreview = preview
        count = preview.GetSegmentation().GetNumberOfSegments()
        self.ui.atlasStatusLabel.text = (
            f"{count} structure(s) found in {result.seconds:.0f} s: review the preview, then Accept or Reject."
        )

    # Handlers ----------------------------------------------------------------------------------

    def onBundlePathChanged(self, path) -> None:
        parameterNode = self.widget.parameterNode()
        if parameterNode is None or self.widget.updatingGui:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the atlas bundle."):
            parameterNode.atlasBundle = path or ""
            if path != self.infoBundle:
                self.showInfo(None)

    def onLoadBundle(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not read the atlas bundle.", waitCursor=True):
            if not self.widget.packagesPanel.setupPythonRequirements(sam=False):
                return
            self.ui.atlasBundlePathLineEdit.addCurrentPathToHistory()
            self.showInfo(None)
            self.monitor.start(self.logic.atlas.startInfo(self.widget.parameterNode().atlasBundle))

    def onApply(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start the atlas.", waitCursor=True):
            parameterNode = self.widget.parameterNode()
            if not self.widget.packagesPanel.setupPythonRequirements(sam=parameterNode.atlasRefine):
                return
            job = self.logic.atlas.startApply(
                parameterNode.inputVolume, parameterNode.atlasBundle, fusion=parameterNode.atlasFusion,
                refine=parameterNode.atlasRefine, checkpoint=parameterNode.checkpoint or None,
            )
            self.monitor.start(job)

    def onAccept(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not add the atlas segments.", waitCursor=True):
            parameterNode = self.widget.parameterNode()
            preview = parameterNode.atlasPreview
            if preview is None:
                raise ValueError("There is no atlas preview to accept")
            target = parameterNode.atlasSegmentation
            # The editor's segmentation is never switched (that would stop the user's active effect).
            undoable = target is not None and editor_bridge.saveUndoStateIfShown(target)
            target = self.logic.atlas.acceptPreview(preview, target)
            with slicer.util.NodeModify(parameterNode):
                parameterNode.atlasPreview = None
                parameterNode.atlasSegmentation = target
            self.ui.atlasStatusLabel.text = f"Segments added to '{target.GetName()}'" + (
                " (Segment Editor: Undo reverts it)." if undoable else ".")

    def onReject(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not remove the atlas preview.", waitCursor=True):
            parameterNode = self.widget.parameterNode()
            self.logic.scene.removePreview(parameterNode.atlasPreview)
            parameterNode.atlasPreview = None
            self.ui.atlasStatusLabel.text = "Atlas preview removed; the scene is as it was."
