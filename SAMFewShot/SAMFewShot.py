"""SAMFewShot: draw a structure on a few slices, get the whole 3D segment; or apply a one-shot
atlas; or run either over a whole study.

The module is a thin layer over the ``samfewshot`` command (SAMFewShotLib): it exports the input
volume and the drawn segment to a temporary folder, runs ``PythonSlicer -m SAMFewShotLib
propagate ... --progress json --report ...`` in a child process polled by a ``qt.QTimer``, and
shows the result as a preview segmentation. Nothing is written into the user's segment until
Accept, which is one undoable Segment Editor step. The Atlas and Batch sections and the SAM
checkpoint row work the same way (``samfewshot atlas``, ``batch``, ``weights``). The Slicer-side
parts are in the SAMFewShotSlicerLib package beside this file; the pure helpers (command lines,
output parsing, the process runner) in ``SAMFewShotLib.slicer_support``, tested without Slicer.
"""

import importlib
import os
import sys
import time
from typing import Annotated, Optional

import numpy as np
import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def _samFewShotLibParentFolder() -> Optional[str]:
    """The folder holding the SAMFewShotLib package: next to this file once the extension is
    built and installed (CMake copies it there), one level up in the source tree."""
    moduleFolder = os.path.dirname(os.path.abspath(__file__))
    for folder in (moduleFolder, os.path.dirname(moduleFolder)):
        if os.path.isfile(os.path.join(folder, "SAMFewShotLib", "__init__.py")):
            return folder
    return None  # then it must be pip-installed (samfewshot)


SAMFEWSHOTLIB_PARENT_FOLDER = _samFewShotLibParentFolder()
for _folder in (os.path.dirname(os.path.abspath(__file__)), SAMFEWSHOTLIB_PARENT_FOLDER):
    if _folder and _folder not in sys.path:
        sys.path.append(_folder)

from SAMFewShotLib.slicer_support import atlas_commands, commands, progress_lines  # noqa: E402
from SAMFewShotLib.slicer_support.report_summary import summarize_report  # noqa: E402
from SAMFewShotSlicerLib.atlas_logic import AtlasLogic  # noqa: E402
from SAMFewShotSlicerLib.atlas_panel import AtlasPanel  # noqa: E402
from SAMFewShotSlicerLib.batch_logic import BatchLogic  # noqa: E402
from SAMFewShotSlicerLib.batch_panel import BATCH_INPUT_CHOICES, BATCH_MODEL_CHOICES, BatchPanel  # noqa: E402
from SAMFewShotSlicerLib.child_jobs import ChildJobsMixin  # noqa: E402
from SAMFewShotSlicerLib.job_monitor import JobMonitor  # noqa: E402
from SAMFewShotSlicerLib.propagation_logic import PropagationLogicMixin  # noqa: E402
from SAMFewShotSlicerLib.python_packages import PythonPackagesMixin  # noqa: E402
from SAMFewShotSlicerLib.scene_exchange import SceneExchangeMixin  # noqa: E402
from SAMFewShotSlicerLib.weights_logic import WEIGHTS_JOB_KINDS, WeightsLogicMixin  # noqa: E402
from SAMFewShotSlicerLib.weights_panel import WeightsPanel  # noqa: E402

#: Engines offered in the Engine combo box (name, description), in this order. Entries that
#: ``commands.engine_requirements`` says cannot run yet are shown disabled, with the reason.
ENGINE_CHOICES = (
    ("auto", "auto: per structure, leave-one-drawn-slice-out validation picks register, interpolate or "
             "their fusion and reports the expected Dice"),
    ("register", "register: slice-to-slice registration (TV-L1 optical flow); continues beyond the outermost "
                 "drawn slice while the structure's intensities allow; works from one slice"),
    ("register:dis", "register with OpenCV DIS optical flow (3-5x faster than TV-L1)"),
    ("register:elastix", "register with elastix B-spline slice registration (slowest)"),
    ("interpolate", "interpolate: Slicer's Fill between slices (morphological contour interpolation); "
                    "fills only between the outermost drawn slices"),
    ("sam", "sam: SAM-MPA, the register mask turned into Segment Anything prompts and post-refined"),
    ("fewshot", "fewshot: SAM mask decoder fitted to the drawn slices' embeddings (few-shot prompt tokens)"),
    ("meta", "meta: SSM-SAM, adapters and self-sampling prompts adapted online from a meta-learned init "
             "(optional Meta init file)"),
)

#: The ``annotated axis`` choices of ``samfewshot propagate`` (``suggest`` uses axial for auto).
AXIS_CHOICES = ["auto", "axial", "coronal", "sagittal"]

#
# SAMFewShot
#


class SAMFewShot(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SAM Few-Shot"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "SegmentEditor"]
        self.parent.contributors = ["SAMFewShot contributors"]
        self.parent.helpText = """
Draw a structure on 1-10 slices in the Segment Editor, choose the segment here and click
<b>Propagate</b>: the whole 3D segment is computed in a background process and shown as a preview.
<b>Accept</b> writes it into the segment (undo with the Segment Editor's Undo), <b>Reject</b> removes it.
<b>Suggest slices</b> proposes which slices to draw on. <b>One-shot atlas</b> applies an atlas bundle
to the volume (its structures as named segments); <b>Batch</b> applies an atlas, a few-shot head or
your annotated volume to many volumes or a folder, with a per-case table. The engines that need no
weights (auto, register, interpolate) run right after the first-use installation of their Python
packages; sam, fewshot and meta also need PyTorch (PyTorch extension) and a Segment Anything
checkpoint (Import file...).
"""
        self.parent.acknowledgementText = """
Engines: ITK morphological contour interpolation (Slicer's Fill between slices); SAM-MPA mask
propagation; Segment Anything (Meta AI), MedSAM and MobileSAM; elastix atlas registration. The
module layout follows the Slicer scripted module template (Jean-Christophe Fillion-Robin, Kitware;
Andras Lasso, PerkLab; Steve Pieper, Isomics).
"""


#
# SAMFewShotParameterNode
#


@parameterNodeWrapper
class SAMFewShotParameterNode:
    """The module's state (saved with the scene).

    inputVolume - the volume the structure is drawn on (also what the atlas is applied to, and
        the batch's reference volume).
    segmentationNode, segmentId - the drawn segment; the accepted result goes there.
    engine - an ENGINE_CHOICES name (may carry an option: ``register:dis``).
    checkpoint - SAM checkpoint name for the weighted engines and atlas refinement ("" = none).
    metaInit - meta-learned initialisation file of the meta engine ("" = its default).
    axis - the annotated axis (auto = detected from the drawing).
    suggestCount - how many slices Suggest slices proposes.
    previewSegmentation - the preview of the last propagation, until it is accepted or rejected.
    atlasBundle, atlasFusion, atlasRefine - the atlas bundle, how several atlases are fused, SAM
        refinement. atlasSegmentation - where Accept adds the atlas segments (None: a new one).
    atlasPreview - the preview of the last atlas run.
    batchInputs, batchInputFolder - scene volumes (checked in the list) or a folder.
    batchModelKind, batchModel - atlas bundle / few-shot head file, or the reference annotation
        (inputVolume + segmentationNode). batchOutputFolder, batchScheduler - where results go,
        ``local:N`` or ``tcp://HOST:PORT`` ("" = local processes).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    segmentationNode: vtkMRMLSegmentationNode
    segmentId: str = ""
    engine: str = "auto"
    checkpoint: str = ""
    metaInit: str = ""
    axis: Annotated[str, Choice(AXIS_CHOICES)] = "auto"
    suggestCount: Annotated[int, WithinRange(1, 20)] = 5
    previewSegmentation: vtkMRMLSegmentationNode
    atlasBundle: str = ""
    atlasFusion: Annotated[str, Choice(list(atlas_commands.FUSION_METHODS))] = "majority"
    atlasRefine: bool = False
    atlasSegmentation: vtkMRMLSegmentationNode
    atlasPreview: vtkMRMLSegmentationNode
    batchInputs: Annotated[str, Choice(list(BATCH_INPUT_CHOICES))] = "scene volumes"
    batchInputFolder: str = ""
    batchModelKind: Annotated[str, Choice(list(BATCH_MODEL_CHOICES))] = "atlas bundle"
    batchModel: str = ""
    batchOutputFolder: str = ""
    batchScheduler: str = ""


#
# SAMFewShotWidget
#


class SAMFewShotWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._suggestion = None  # {"numpy_axis": int, "slices": [int]} of the last Suggest slices
        self._previewSlices = []  # slice indices listed in sliceConfidenceList
        self._previewAxis = None
        self.updatingGui = False
        self.propagateMonitor = None  # JobMonitor of the Propagate section (propagate, suggest, weights)
        self.weightsPanel = None
        self.atlasPanel = None
        self.batchPanel = None

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)

        # Load widget from .ui file (created by Qt Designer).
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SAMFewShot.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)

        # Set scene in MRML widgets (the .ui connects mrmlSceneChanged to each MRML widget's setMRMLScene).
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SAMFewShotLogic()
        self.propagateMonitor = JobMonitor(
            self.logic, self.ui.progressBar, self.ui.statusLabel, self.ui.elapsedLabel,
            self.finishPropagateSectionJob, self.updateGuiFromParameterNode,
        )
        self.weightsPanel = WeightsPanel(self)
        self.atlasPanel = AtlasPanel(self)
        self.batchPanel = BatchPanel(self)

        # Update the parameter node when the scene is closed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Widgets that connectGui cannot bind (segment selector, combo boxes with disabled entries, path edits)
        self.ui.segmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.engineComboBox.connect("currentIndexChanged(int)", self.onEngineChanged)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.metaInitPathLineEdit.connect("currentPathChanged(QString)", self.onMetaInitChanged)

        # Buttons and lists
        self.ui.suggestButton.connect("clicked(bool)", self.onSuggest)
        self.ui.suggestedSlicesList.connect("currentRowChanged(int)", self.onSuggestedSliceSelected)
        self.ui.propagateButton.connect("clicked(bool)", self.onPropagate)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.acceptButton.connect("clicked(bool)", self.onAccept)
        self.ui.rejectButton.connect("clicked(bool)", self.onReject)
        self.ui.sliceConfidenceList.connect("currentRowChanged(int)", self.onConfidenceSliceSelected)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.installSamSupportButton.connect("clicked(bool)", self.onInstallSamSupport)

        self.weightsPanel.setup()
        self.atlasPanel.setup()
        self.batchPanel.setup()
        self.populateEngines()

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.cancelJobsQuietly()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()
        self.updateDependenciesStatus()
        if not self.weightsPanel.listed:
            # List the SAM checkpoints once the panel is shown (`samfewshot weights list`, in the background).
            qt.QTimer.singleShot(0, self.weightsPanel.onRefreshModels)

    def exit(self) -> None:
        """Called each time the user opens a different module (running jobs keep running)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiFromParameterNode)

    def onReload(self) -> None:
        """Developer mode Reload: reload SAMFewShotSlicerLib and SAMFewShotLib.slicer_support too
        (slicer.util.reloadScriptedModule reloads this file only)."""
        with slicer.util.tryWithErrorDisplay("Reload failed."):
            self.cancelJobsQuietly()
            # Helpers before their users: slicer_support, then the logic parts, then the panels.
            names = [n for n in sys.modules if n.startswith(("SAMFewShotSlicerLib", "SAMFewShotLib.slicer_support"))]
            for name in sorted(names, key=lambda n: (n.startswith("SAMFewShotSlicerLib"), n.endswith("_panel"), n)):
                importlib.reload(sys.modules[name])
            ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed: stop running jobs, forget the parameter node."""
        self.cancelJobsQuietly()
        self.showPreviewSummary(None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def cancelJobsQuietly(self) -> None:
        """Stop every running job without dialogs (module cleanup, scene close, reload)."""
        if self.propagateMonitor is not None:
            self.propagateMonitor.cancelQuietly()
        for panel in (self.atlasPanel, self.batchPanel):
            if panel is not None:
                panel.cleanup()

    def parameterNode(self) -> Optional[SAMFewShotParameterNode]:
        """The parameter node the GUI shows (None while the scene closes)."""
        return self._parameterNode

    def initializeParameterNode(self) -> None:
        """Ensure the parameter node exists and is observed; default to the Segment Editor's selection."""
        self.setParameterNode(self.logic.getParameterNode())
        parameterNode = self._parameterNode
        editorVolume, editorSegmentation, editorSegmentId = self.logic.segmentEditorSelection()
        if not parameterNode.inputVolume:
            volume = editorVolume or slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if volume:
                parameterNode.inputVolume = volume
        segmentationNode = parameterNode.segmentationNode
        segmentMissing = (
            segmentationNode is None
            or not parameterNode.segmentId
            or segmentationNode.GetSegmentation().GetSegment(parameterNode.segmentId) is None
        )
        if segmentMissing and editorSegmentation:
            with slicer.util.NodeModify(parameterNode):
                parameterNode.segmentationNode = editorSegmentation
                parameterNode.segmentId = editorSegmentId or ""

    def setParameterNode(self, inputParameterNode: Optional[SAMFewShotParameterNode]) -> None:
        """Set and observe the parameter node (the GUI follows its changes immediately)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Note: in the .ui file, a Qt dynamic property called "SlicerParameterName" is set on each
            # ui element that needs connection (selectors, combo boxes, check box, line edit).
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiFromParameterNode)
        self.updateGuiFromParameterNode()

    # GUI state ---------------------------------------------------------------------------------

    def updateGuiFromParameterNode(self, caller=None, event=None) -> None:
        """Widgets that connectGui does not bind, and the enabled state of every button."""
        parameterNode = self._parameterNode
        running = self.propagateMonitor is not None and self.propagateMonitor.running
        self.updatingGui = True
        try:
            self.weightsPanel.updateButtons(running)
            self.atlasPanel.updateGui(parameterNode)
            self.batchPanel.updateGui(parameterNode)
            if parameterNode is None:
                for button in (self.ui.propagateButton, self.ui.suggestButton, self.ui.acceptButton, self.ui.rejectButton):
                    button.enabled = False
                self.ui.cancelButton.enabled = running
                return
            if self.ui.segmentSelector.currentNode() != parameterNode.segmentationNode:
                self.ui.segmentSelector.setCurrentNode(parameterNode.segmentationNode)
            if parameterNode.segmentId and self.ui.segmentSelector.currentSegmentID() != parameterNode.segmentId:
                self.ui.segmentSelector.setCurrentSegmentID(parameterNode.segmentId)
            engineIndex = self.ui.engineComboBox.findData(parameterNode.engine)
            if engineIndex >= 0 and engineIndex != self.ui.engineComboBox.currentIndex:
                self.ui.engineComboBox.currentIndex = engineIndex
            modelIndex = self.ui.modelComboBox.findData(parameterNode.checkpoint)
            if modelIndex >= 0 and modelIndex != self.ui.modelComboBox.currentIndex:
                self.ui.modelComboBox.currentIndex = modelIndex
            if self.ui.metaInitPathLineEdit.currentPath != parameterNode.metaInit:
                self.ui.metaInitPathLineEdit.currentPath = parameterNode.metaInit
        finally:
            self.updatingGui = False

        family = self.engineFamily(parameterNode.engine)
        self.ui.modelComboBox.enabled = bool(self.weightsPanel.checkpoints)
        self.ui.metaInitPathLineEdit.enabled = family in commands.INIT_ENGINES
        problem = self.propagationProblem()
        self.ui.propagateButton.enabled = problem is None and not running
        self.ui.propagateButton.toolTip = problem or (
            "Propagate the drawn slices to the whole volume. The result is shown as a preview; "
            "the segment changes only on Accept."
        )
        self.ui.suggestButton.enabled = parameterNode.inputVolume is not None and not running
        self.ui.cancelButton.enabled = running
        hasPreview = parameterNode.previewSegmentation is not None
        self.ui.acceptButton.enabled = hasPreview and not running
        self.ui.rejectButton.enabled = hasPreview and not running

    @staticmethod
    def engineFamily(engine: str) -> Optional[str]:
        """The engine without its option (None for an empty name in an old scene)."""
        try:
            return commands.engine_family(engine)
        except ValueError:
            return None

    def engineNeeds(self, engine: str) -> Optional[str]:
        """What ``engine`` still needs (PyTorch, a checkpoint) as tooltip text, or None."""
        return commands.engine_requirements(engine, self.logic.torchAvailable(), self.weightsPanel.checkpoints)

    def propagationProblem(self) -> Optional[str]:
        """Why Propagate cannot run now (tooltip text), or None."""
        parameterNode = self._parameterNode
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
        if need is not None:
            return f"Engine {parameterNode.engine}: {need}."
        return None

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
                    # Grey the entry out (QComboBox's model is a QStandardItemModel); Propagate also
                    # stays disabled with the reason as tooltip (propagationProblem).
                    itemOf = getattr(combo.model(), "item", None)
                    item = itemOf(index) if itemOf is not None else None
                    if item is not None:
                        item.setEnabled(False)
            selected = self._parameterNode.engine if self._parameterNode else "auto"
            index = combo.findData(selected)
            combo.currentIndex = index if index >= 0 else 0
        finally:
            combo.blockSignals(wasBlocked)

    def updateDependenciesStatus(self) -> None:
        """Say in the Python packages section what is missing."""
        missing = self.logic.missingPythonRequirements(sam=False)
        samMissing = [requirement for requirement in self.logic.missingPythonRequirements(sam=True) if requirement not in missing]
        lines = ["Engines without weights, atlas, batch: " + ("ready." if not missing else "missing " + ", ".join(missing) + ".")]
        samNeeds = list(samMissing) + ([] if self.logic.torchAvailable() else ["torch (PyTorch extension)"])
        lines.append("SAM engines (sam, fewshot, meta): " + ("ready." if not samNeeds else "missing " + ", ".join(samNeeds) + "."))
        self.ui.dependenciesStatusLabel.text = "\n".join(lines)

    def showPreviewSummary(self, result) -> None:
        """Expected Dice and per-slice confidence of the preview (None clears the section)."""
        self.ui.sliceConfidenceList.clear()
        self._previewSlices = []
        self._previewAxis = None
        if result is None:
            self.ui.previewSummaryLabel.text = "No preview."
            self.ui.expectedDiceLabel.text = ""
            return
        expectedDice, slices = summarize_report(result.report)
        axis = result.report.get("axis")
        self._previewAxis = int(axis) if axis in (0, 1, 2) else None
        stack = np.moveaxis(result.labels, self._previewAxis or 0, 0)
        filledSlices = int(np.count_nonzero(stack.reshape(stack.shape[0], -1).any(axis=1)))
        self.ui.previewSummaryLabel.text = (
            f"Preview of '{result.segmentName}' ({result.engine}, {progress_lines.format_elapsed(result.seconds)}): "
            f"{filledSlices} of {stack.shape[0]} slices filled. Accept writes it into the segment, Reject removes it."
        )
        self.ui.expectedDiceLabel.text = (
            f"Expected Dice: {expectedDice:.3f}" if expectedDice is not None
            else "Expected Dice: not estimated by this engine (use auto)."
        )
        for index, confidence in slices:
            self.ui.sliceConfidenceList.addItem(f"slice {index}: confidence {confidence:.2f}")
            self._previewSlices.append(index)

    def jumpRedSliceView(self, numpyAxis, index) -> None:
        """Show slice ``index`` along ``numpyAxis`` of the input volume in the red slice view."""
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        layoutManager = slicer.app.layoutManager()
        if volume is None or layoutManager is None or numpyAxis is None:
            return
        r, a, s = self.logic.sliceCenterRas(volume, int(numpyAxis), int(index))
        layoutManager.sliceWidget("Red").mrmlSliceNode().JumpSliceByOffsetting(r, a, s)

    # Handlers: selections ----------------------------------------------------------------------

    def onSegmentationChanged(self, node) -> None:
        if self.updatingGui or self._parameterNode is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the segmentation."):
            with slicer.util.NodeModify(self._parameterNode):
                self._parameterNode.segmentationNode = node
                self._parameterNode.segmentId = self.ui.segmentSelector.currentSegmentID() or ""

    def onSegmentChanged(self, segmentId) -> None:
        if self.updatingGui or self._parameterNode is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the segment."):
            self._parameterNode.segmentId = segmentId or ""

    def onEngineChanged(self, index) -> None:
        if self.updatingGui or self._parameterNode is None or index < 0:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the engine."):
            self._parameterNode.engine = self.ui.engineComboBox.itemData(index)

    def onModelChanged(self, index) -> None:
        if self.updatingGui or self._parameterNode is None or index < 0:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the model."):
            self._parameterNode.checkpoint = self.ui.modelComboBox.itemData(index) or ""

    def onMetaInitChanged(self, path) -> None:
        if self.updatingGui or self._parameterNode is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the meta init file."):
            self._parameterNode.metaInit = path or ""

    def onSuggestedSliceSelected(self, row) -> None:
        if self._suggestion is None or not 0 <= row < len(self._suggestion["slices"]):
            return
        with slicer.util.tryWithErrorDisplay("Could not show the suggested slice."):
            self.jumpRedSliceView(self._suggestion["numpy_axis"], self._suggestion["slices"][row])

    def onConfidenceSliceSelected(self, row) -> None:
        if not 0 <= row < len(self._previewSlices):
            return
        with slicer.util.tryWithErrorDisplay("Could not show the slice."):
            self.jumpRedSliceView(self._previewAxis, self._previewSlices[row])

    # Handlers: Python packages -----------------------------------------------------------------

    def setupPythonRequirements(self, sam: bool = False, dist: bool = False) -> bool:
        """Install missing Python packages on first use, after asking. Returns False if declined.

        torch comes from the PyTorch extension (PyTorchUtils, which asks again before it
        downloads); everything else from pip with Slicer's SimpleITK and numpy pinned.
        """
        missing = self.logic.missingPythonRequirements(sam=sam, dist=dist)
        needTorch = sam and not self.logic.torchAvailable()
        if not missing and not needTorch:
            return True
        packages = list(missing) + (["torch and torchvision (installed by the PyTorch extension)"] if needTorch else [])
        if not slicer.util.confirmOkCancelDisplay(
            "SAMFewShot needs these Python packages, which are not installed yet:\n\n  "
            + "\n  ".join(packages)
            + "\n\nInstall them now? They are downloaded from the internet and installation may take a few "
            "minutes. Slicer's own SimpleITK and numpy are kept as they are.",
            windowTitle="SAMFewShot: install Python packages",
        ):
            self.ui.statusLabel.text = "Python packages were not installed: " + ", ".join(packages)
            return False
        self.ui.statusLabel.text = "Installing Python packages..."
        slicer.app.processEvents()
        self.logic.installPythonRequirements(sam=sam, dist=dist, askTorchConfirmation=True)
        self.ui.statusLabel.text = "Python packages installed."
        self.updateDependenciesStatus()
        self.populateEngines()
        self.updateGuiFromParameterNode()
        return True

    def onInstallDependencies(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not install the Python packages.", waitCursor=True):
            if self.setupPythonRequirements(sam=False) and not self.logic.missingPythonRequirements(sam=False):
                self.ui.statusLabel.text = "All Python packages of the weightless engines are installed."

    def onInstallSamSupport(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not install SAM support.", waitCursor=True):
            if self.setupPythonRequirements(sam=True):
                self.weightsPanel.startList()

    # Handlers: jobs ----------------------------------------------------------------------------

    def onSuggest(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start Suggest slices.", waitCursor=True):
            if not self.setupPythonRequirements(sam=False):
                return
            parameterNode = self._parameterNode
            axis = "axial" if parameterNode.axis == "auto" else parameterNode.axis
            job = self.logic.startSuggestion(parameterNode.inputVolume, parameterNode.suggestCount, axis=axis)
            self.ui.suggestedSlicesList.clear()
            self._suggestion = None
            self.propagateMonitor.start(job)

    def onPropagate(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start the propagation.", waitCursor=True):
            parameterNode = self._parameterNode
            if not self.setupPythonRequirements(sam=self.engineFamily(parameterNode.engine) in commands.WEIGHTED_ENGINES):
                return
            job = self.logic.startPropagation(
                parameterNode.inputVolume,
                parameterNode.segmentationNode,
                parameterNode.segmentId,
                engine=parameterNode.engine,
                checkpoint=parameterNode.checkpoint or None,
                axis=parameterNode.axis,
                init=parameterNode.metaInit or None,
            )
            self.propagateMonitor.start(job)

    def finishPropagateSectionJob(self, job) -> None:
        """Read a finished job of the Propagate section (propagate, suggest or weights)."""
        if job.kind in WEIGHTS_JOB_KINDS:
            self.weightsPanel.finish(job)
        elif job.kind == "suggest":
            self.finishSuggestion(job)
        else:
            self.finishPropagation(job)

    def finishSuggestion(self, job) -> None:
        self._suggestion = self.logic.finishSuggestion(job)
        for index in self._suggestion["slices"]:
            self.ui.suggestedSlicesList.addItem(f"{self._suggestion['axis']} slice {index}")
        if self._suggestion["slices"]:
            self.ui.suggestedSlicesList.setCurrentRow(0)  # shows the first one in the red slice view
        self.ui.statusLabel.text = (
            f"Draw the structure on these {len(self._suggestion['slices'])} slices (click one to show it)."
        )

    def finishPropagation(self, job) -> None:
        result = self.logic.finishPropagation(job)
        parameterNode = self._parameterNode
        oldPreview = parameterNode.previewSegmentation
        preview = self.logic.createPreview(result)
        if oldPreview is not None:
            self.logic.removePreview(oldPreview)
        parameterNode.previewSegmentation = preview
        self.showPreviewSummary(result)
        self.ui.previewCollapsibleButton.collapsed = False
        self.ui.statusLabel.text = f"Done in {progress_lines.format_elapsed(result.seconds)}: review the preview, then Accept or Reject."

    def onCancel(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not cancel.", waitCursor=True):
            self.propagateMonitor.cancel()

    # Handlers: preview -------------------------------------------------------------------------

    @staticmethod
    def saveSegmentEditorUndoState(segmentationNode) -> None:
        """Record the segmentation's current state in the Segment Editor's undo history, so the
        Segment Editor's Undo reverts the next change in one step."""
        editor = slicer.util.getModuleWidget("SegmentEditor").editor
        if editor.segmentationNode() != segmentationNode:
            editor.setSegmentationNode(segmentationNode)
        editor.saveStateForUndo()

    def onAccept(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not write the preview into the segment.", waitCursor=True):
            preview = self._parameterNode.previewSegmentation
            if preview is None:
                raise ValueError("There is no preview to accept")
            _volume, segmentationNode, segmentId = self.logic.previewTarget(preview)
            self.saveSegmentEditorUndoState(segmentationNode)
            self.logic.acceptPreview(preview)
            self._parameterNode.previewSegmentation = None
            self.showPreviewSummary(None)
            segmentName = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
            self.ui.statusLabel.text = f"Written into '{segmentName}' (Segment Editor: Undo reverts it)."

    def onReject(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not remove the preview.", waitCursor=True):
            preview = self._parameterNode.previewSegmentation
            if preview is not None:
                self.logic.removePreview(preview)
            self._parameterNode.previewSegmentation = None
            self.showPreviewSummary(None)
            self.ui.statusLabel.text = "Preview removed; the segment is unchanged."


#
# SAMFewShotLogic
#


class SAMFewShotLogic(
    ScriptedLoadableModuleLogic, PropagationLogicMixin, WeightsLogicMixin, ChildJobsMixin, SceneExchangeMixin,
    PythonPackagesMixin,
):
    """Runs the ``samfewshot`` command for the module; usable without the GUI (and in tests).

    The logic takes nodes and plain values, never touches widgets, and raises ValueError naming the
    bad value. Long work runs in a child process: start*() returns a SAMFewShotJob, pollJob() is
    called from a timer (or waitForJob() blocks), finish*() reads the result, cancelJob() stops the
    whole process tree and leaves the scene unchanged. The mixins (SAMFewShotSlicerLib) hold the
    propagation and its preview (startPropagation, propagate, createPreview, acceptPreview), the SAM
    checkpoint jobs, the child-process machinery, the scene <-> file exchange and the Python package
    setup; ``atlas`` (AtlasLogic) and ``batch`` (BatchLogic) do the same for atlas bundles and batches.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.atlas = AtlasLogic(self)
        self.batch = BatchLogic(self)

    def getParameterNode(self):
        return SAMFewShotParameterNode(super().getParameterNode())

    @staticmethod
    def segmentEditorSelection():
        """(source volume, segmentation node, selected segment ID) of the Segment Editor, each None if unset."""
        editorNode = slicer.mrmlScene.GetSingletonNode("SegmentEditor", "vtkMRMLSegmentEditorNode")
        if editorNode is None:
            return None, None, None
        getSourceVolume = getattr(editorNode, "GetSourceVolumeNode", None) or editorNode.GetMasterVolumeNode
        return getSourceVolume(), editorNode.GetSegmentationNode(), editorNode.GetSelectedSegmentID()

    # Slice views -------------------------------------------------------------------------------

    @staticmethod
    def sliceCenterRas(volumeNode, numpyAxis: int, index: int):
        """RAS position of the center of slice ``index`` along numpy axis ``numpyAxis`` of the
        volume's (k, j, i) array."""
        if numpyAxis not in (0, 1, 2):
            raise ValueError(f"Numpy axis must be 0, 1 or 2, not {numpyAxis!r}")
        dimensions = volumeNode.GetImageData().GetDimensions()  # (i, j, k)
        if not 0 <= index < dimensions[2 - numpyAxis]:
            raise ValueError(f"Slice index must be in [0, {dimensions[2 - numpyAxis] - 1}], not {index}")
        ijk = [(size - 1) / 2.0 for size in dimensions]
        ijk[2 - numpyAxis] = float(index)
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        ras = ijkToRas.MultiplyPoint([*ijk, 1.0])
        return ras[0], ras[1], ras[2]


#
# SAMFewShotTest
#


class SAMFewShotTest(ScriptedLoadableModuleTest):
    """Runs the real ``samfewshot`` child on MRHead with a synthetic bright ball drawn on 3 slices.

    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        """Reset the scene; install the weightless engines' packages if missing (testing mode
        answers the confirmation itself)."""
        slicer.mrmlScene.Clear()
        self.logic = SAMFewShotLogic()
        if self.logic.missingPythonRequirements(sam=False):
            self.logic.installPythonRequirements(sam=False)

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_PropagateFillsBetweenAndBeyond()
        self.setUp()
        self.test_PreviewRejectAndUndoableAccept()
        self.setUp()
        self.test_CancelLeavesSceneUnchanged()
        self.setUp()
        self.test_AtlasFromDrawnSegmentComesBackNamed()

    def drawBall(self, drawnOffsets=(-9, 0, 9)):
        """MRHead with a bright ball (radius 25 mm) painted in; the ball drawn on the slices at
        ``drawnOffsets`` from its center (all slices when None).

        Returns (volume, segmentation, segmentId, ball (k, j, i) bool, drawn slice indices).
        """
        import SampleData

        volume = SampleData.downloadSample("MRHead")
        voxels = slicer.util.arrayFromVolume(volume)
        spacing = np.array(volume.GetSpacing())[::-1]  # (k, j, i) in mm
        center = np.array(voxels.shape) // 2
        k, j, i = np.ogrid[: voxels.shape[0], : voxels.shape[1], : voxels.shape[2]]
        distance2 = (
            ((k - center[0]) * spacing[0]) ** 2 + ((j - center[1]) * spacing[1]) ** 2 + ((i - center[2]) * spacing[2]) ** 2
        )
        ball = distance2 <= 25.0 ** 2
        brightness = min(float(np.iinfo(voxels.dtype).max) if voxels.dtype.kind in "iu" else 1e6, float(voxels.max()) * 1.5 + 100)
        voxels[ball] = brightness
        slicer.util.arrayFromVolumeModified(volume)

        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "SAMFewShotTest")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        segmentId = segmentation.GetSegmentation().AddEmptySegment("", "ball")
        drawnSlices = list(range(voxels.shape[0])) if drawnOffsets is None else [int(center[0]) + d for d in drawnOffsets]
        drawn = np.zeros(voxels.shape, np.uint8)
        drawn[drawnSlices] = ball[drawnSlices]
        slicer.util.updateSegmentBinaryLabelmapFromArray(drawn, segmentation, segmentId, volume)
        return volume, segmentation, segmentId, ball, drawnSlices

    @staticmethod
    def dice(a, b) -> float:
        a, b = np.asarray(a, bool), np.asarray(b, bool)
        total = a.sum() + b.sum()
        return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total

    def test_PropagateFillsBetweenAndBeyond(self):
        """interpolate fills between the drawn slices only; register also continues beyond them."""
        self.delayDisplay("Starting propagation test")
        volume, segmentation, segmentId, ball, drawnSlices = self.drawBall()
        drawnBefore = self.logic.segmentMask(volume, segmentation, segmentId)
        first, last = drawnSlices[0], drawnSlices[-1]
        for engine in ("interpolate", "register"):
            result = self.logic.propagate(volume, segmentation, segmentId, engine=engine, timeoutSeconds=1800)
            labels = result.labels.astype(bool)
            self.assertEqual(labels.shape, ball.shape)
            for index in drawnSlices:  # drawn slices come back exactly as drawn
                self.assertTrue(np.array_equal(labels[index], ball[index]), f"{engine}: slice {index} changed")
            between = slice(first + 1, last)
            self.assertGreater(self.dice(labels[between], ball[between]), 0.85, f"{engine}: between the drawn slices")
            self.assertTrue(labels[between].reshape(last - first - 1, -1).any(axis=1).all(), f"{engine}: a slice between is empty")
            filledBeyond = int(labels[:first].any(axis=(1, 2)).sum() + labels[last + 1 :].any(axis=(1, 2)).sum())
            if engine == "interpolate":
                self.assertEqual(filledBeyond, 0, "interpolate must not fill beyond the outermost drawn slices")
            else:
                self.assertGreaterEqual(filledBeyond, 6, "register must continue beyond the outermost drawn slices")
                self.assertGreater(self.dice(labels, ball), 0.8, "register: whole ball")
            # Propagation alone never changes the user's segment
            self.assertTrue(np.array_equal(self.logic.segmentMask(volume, segmentation, segmentId), drawnBefore))
            self.delayDisplay(f"{engine}: Dice {self.dice(labels, ball):.3f}, {filledBeyond} slices beyond")
        self.delayDisplay("Propagation test passed")

    def test_PreviewRejectAndUndoableAccept(self):
        """Reject leaves everything as it was; Accept writes the segment in one undoable step."""
        self.delayDisplay("Starting preview test")
        volume, segmentation, segmentId, ball, drawnSlices = self.drawBall()
        drawn = self.logic.segmentMask(volume, segmentation, segmentId)
        result = self.logic.propagate(volume, segmentation, segmentId, engine="interpolate", timeoutSeconds=1800)

        nodesBefore = self.logic.sceneNodeIds()
        preview = self.logic.createPreview(result)
        self.assertIn("(preview)", preview.GetName())
        self.assertTrue(np.array_equal(self.logic.segmentMask(volume, segmentation, segmentId), drawn))
        self.logic.removePreview(preview)
        self.assertEqual(self.logic.sceneNodeIds(), nodesBefore)
        self.assertTrue(np.array_equal(self.logic.segmentMask(volume, segmentation, segmentId), drawn))

        preview = self.logic.createPreview(result)
        SAMFewShotWidget.saveSegmentEditorUndoState(segmentation)
        self.logic.acceptPreview(preview)
        self.assertIsNone(preview.GetScene())
        self.assertTrue(np.array_equal(self.logic.segmentMask(volume, segmentation, segmentId), result.labels))
        slicer.util.getModuleWidget("SegmentEditor").editor.undo()
        self.assertTrue(np.array_equal(self.logic.segmentMask(volume, segmentation, segmentId), drawn))
        self.delayDisplay("Preview test passed")

    def test_CancelLeavesSceneUnchanged(self):
        """Cancel kills the child tree, removes its files and leaves the scene exactly as it was."""
        self.delayDisplay("Starting cancel test")
        volume, segmentation, segmentId, ball, drawnSlices = self.drawBall()
        self.logic.getParameterNode()
        drawn = self.logic.segmentMask(volume, segmentation, segmentId)
        nodesBefore = self.logic.sceneNodeIds()

        # elastix slice registration takes tens of seconds on MRHead: still running when cancelled
        job = self.logic.startPropagation(volume, segmentation, segmentId, engine="register:elastix")
        self.assertTrue(job.running)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            self.logic.pollJob(job)
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertTrue(job.running, "the job finished before it could be cancelled")
        self.logic.cancelJob(job)

        self.assertFalse(job.running)
        self.assertTrue(job.runner.cancelled)
        self.assertFalse(os.path.exists(job.folder))
        self.assertEqual(self.logic.sceneNodeIds(), nodesBefore)
        self.assertTrue(np.array_equal(self.logic.segmentMask(volume, segmentation, segmentId), drawn))
        with self.assertRaises(RuntimeError):
            self.logic.finishPropagation(job)
        self.delayDisplay("Cancel test passed")

    def test_AtlasFromDrawnSegmentComesBackNamed(self):
        """An atlas made of MRHead and the whole drawn ball (`samfewshot atlas create`), applied to
        the same volume: the preview holds a segment named "ball" covering the ball; Reject leaves
        the scene as it was, Accept adds the segment to a segmentation."""
        self.delayDisplay("Starting atlas test")
        volume, segmentation, segmentId, ball, drawnSlices = self.drawBall(drawnOffsets=None)
        bundle = os.path.join(slicer.app.temporaryPath, f"SAMFewShotTest-{os.getpid()}-ball.zip")
        if os.path.exists(bundle):
            os.remove(bundle)
        try:
            job = self.logic.atlas.startCreate(volume, segmentation, bundle, name="ball atlas")
            self.logic.waitForJob(job, 600)
            self.assertEqual(self.logic.atlas.finishCreate(job), bundle)
            job = self.logic.atlas.startInfo(bundle)
            self.logic.waitForJob(job, 300)
            info = self.logic.atlas.finishInfo(job)
            self.assertEqual([label.name for label in info.labels], ["ball"])

            nodesBefore = self.logic.sceneNodeIds()
            job = self.logic.atlas.startApply(volume, bundle)
            self.logic.waitForJob(job, 1800)
            result = self.logic.atlas.finishApply(job)
            preview = self.logic.atlas.createPreview(result, info.name)
            previewSegmentation = preview.GetSegmentation()
            self.assertEqual(previewSegmentation.GetNumberOfSegments(), 1)
            self.assertEqual(previewSegmentation.GetNthSegment(0).GetName(), "ball")
            found = self.logic.segmentMask(volume, preview, previewSegmentation.GetNthSegmentID(0))
            self.assertGreater(self.dice(found, ball), 0.9, "the atlas applied to its own image")
            self.logic.removePreview(preview)
            self.assertEqual(self.logic.sceneNodeIds(), nodesBefore)

            preview = self.logic.atlas.createPreview(result, info.name)
            target = self.logic.atlas.acceptPreview(preview)
            self.assertIsNone(preview.GetScene())
            targetId = target.GetSegmentation().GetSegmentIdBySegmentName("ball")
            self.assertTrue(targetId)
            self.assertGreater(self.dice(self.logic.segmentMask(volume, target, targetId), ball), 0.9)
        finally:
            if os.path.exists(bundle):
                os.remove(bundle)
        self.delayDisplay("Atlas test passed")
