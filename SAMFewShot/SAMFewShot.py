"""SAMFewShot: draw a structure on a few slices, get the whole 3D segment.

The module is a thin layer over the ``samfewshot`` command (SAMFewShotLib): it exports the input
volume and the drawn segment to a temporary folder, runs ``PythonSlicer -m SAMFewShotLib
propagate ... --progress json --report ...`` in a child process polled by a ``qt.QTimer``, and
shows the result as a preview segmentation. Nothing is written into the user's segment until
Accept, which is one undoable Segment Editor step. The pure helpers (command lines, progress
parsing, the process runner) live in ``SAMFewShotLib.slicer_support`` and are tested without
Slicer.
"""

import contextlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
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
if SAMFEWSHOTLIB_PARENT_FOLDER and SAMFEWSHOTLIB_PARENT_FOLDER not in sys.path:
    sys.path.append(SAMFEWSHOTLIB_PARENT_FOLDER)

from SAMFewShotLib.slicer_support import commands, progress_lines  # noqa: E402
from SAMFewShotLib.slicer_support.process_runner import ProcessRunner  # noqa: E402

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
    ("fewshot", "fewshot: few-shot SAM mask decoder"),
    ("meta", "meta: SSM-SAM meta-learned adapters"),
)

#: The ``annotated axis`` choices of ``samfewshot propagate`` (``suggest`` uses axial for auto).
AXIS_CHOICES = ["auto", "axial", "coronal", "sagittal"]

#: pyproject.toml [project] dependencies without SimpleITK: Slicer ships its own SimpleITK
#: (with Slicer's IO), which must never be replaced. Testing/test_slicer_module.py keeps this in
#: sync with pyproject.toml.
PYTHON_REQUIREMENTS = (
    "itk-elastix>=0.20",
    "itk-morphologicalcontourinterpolation>=2.0",
    "nibabel>=4.0",
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    "scipy>=1.10",
    "scikit-image>=0.22",
    "slicerio>=1.0",
    "tqdm>=4.60",
)
#: The ``sam`` extra without torch and torchvision, which come from the PyTorch extension.
SAM_PYTHON_REQUIREMENTS = (
    "segment-anything>=1.0",
    "mobilesam-mirror==1.0.0",
    "timm>=0.9,<2",
    "platformdirs>=3",
)
#: Version requirements passed to PyTorchUtilsLogic.installTorch (the ``sam`` extra's pins).
TORCH_VERSION_REQUIREMENT = ">=2.1,<2.15"
TORCHVISION_VERSION_REQUIREMENT = ">=0.16,<0.30"
#: Packages Slicer (or the PyTorch extension) already provides: pinned to their installed version
#: in a pip constraints file, so installing our requirements can never replace them.
PINNED_PACKAGES = ("SimpleITK", "numpy", "torch", "torchvision")

#: Attributes of a preview segmentation node: where Accept writes it.
PREVIEW_ATTRIBUTE_PREFIX = "SAMFewShot.Preview."
PREVIEW_SEGMENTATION_ATTRIBUTE = PREVIEW_ATTRIBUTE_PREFIX + "SegmentationNodeID"
PREVIEW_SEGMENT_ATTRIBUTE = PREVIEW_ATTRIBUTE_PREFIX + "SegmentID"
PREVIEW_VOLUME_ATTRIBUTE = PREVIEW_ATTRIBUTE_PREFIX + "VolumeNodeID"
PREVIEW_ENGINE_ATTRIBUTE = PREVIEW_ATTRIBUTE_PREFIX + "Engine"

#: How often the widget polls a running child (milliseconds).
POLL_INTERVAL_MS = 100


def requirementName(requirement: str) -> str:
    """The distribution name of a requirement string: ``"timm>=0.9,<2"`` -> ``"timm"``."""
    name = re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0]
    if not name:
        raise ValueError(f"Requirement must start with a package name, not {requirement!r}")
    return name


def requirementSatisfied(requirement: str) -> bool:
    """Whether an installed distribution satisfies ``requirement`` (name and version specifier).

    The version is checked with ``packaging`` when it is importable (it is in Slicer); without it,
    presence of the distribution counts as satisfied.
    """
    try:
        installedVersion = importlib.metadata.version(requirementName(requirement))
    except importlib.metadata.PackageNotFoundError:
        return False
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return True
    return Requirement(requirement).specifier.contains(installedVersion, prereleases=True)


def pinnedPackageConstraints() -> list:
    """``name==version`` for every :data:`PINNED_PACKAGES` entry that is installed."""
    constraints = []
    for name in PINNED_PACKAGES:
        try:
            constraints.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return constraints


def offlineInstallInstructions(requirements) -> str:
    """What to do when pip cannot reach a package index (a computer without network)."""
    packages = " ".join(f'"{requirement}"' for requirement in requirements)
    return (
        "The Python packages could not be installed (is this computer offline?).\n\n"
        "To install them without network access:\n"
        "1. On a computer with network access and the same Slicer version and operating system, run\n"
        f"   PythonSlicer -m pip download -d samfewshot-wheels {packages}\n"
        "2. Copy the samfewshot-wheels folder to this computer.\n"
        "3. In Slicer's Python console run\n"
        "   slicer.util.pip_install(['--no-index', '--find-links', '/path/to/samfewshot-wheels', "
        + ", ".join(f"'{requirement}'" for requirement in requirements)
        + "])\n"
        "4. Restart Slicer."
    )


def summarizeReport(report: dict, labelValue: int = 1):
    """Expected Dice and per-slice confidence of one label from a ``--report`` JSON object.

    Returns:
        (expectedDice or None, [(slice index, confidence)] for the slices where the engine
        predicts something or has evidence (confidence > 0), lowest confidence first).
    """
    key = str(labelValue)
    expectedDice = (report.get("expected_dice") or {}).get(key)
    confidences = (report.get("slice_confidence") or {}).get(key) or []
    slices = [(index, float(value)) for index, value in enumerate(confidences) if value is not None and value > 0]
    slices.sort(key=lambda item: (item[1], item[0]))
    return (None if expectedDice is None else float(expectedDice)), slices


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
<b>Suggest slices</b> proposes which slices to draw on. The engines that need no weights (auto,
register, interpolate) run right after the first-use installation of their Python packages; the
sam engine also needs PyTorch (PyTorch extension) and a Segment Anything checkpoint (Import file...).
"""
        self.parent.acknowledgementText = """
Engines: ITK morphological contour interpolation (Slicer's Fill between slices); SAM-MPA mask
propagation; Segment Anything (Meta AI), MedSAM and MobileSAM. The module layout follows the
Slicer scripted module template (Jean-Christophe Fillion-Robin, Kitware; Andras Lasso, PerkLab;
Steve Pieper, Isomics).
"""


#
# SAMFewShotParameterNode
#


@parameterNodeWrapper
class SAMFewShotParameterNode:
    """The module's state (saved with the scene).

    inputVolume - the volume the structure is drawn on.
    segmentationNode, segmentId - the drawn segment; the accepted result goes there.
    engine - an ENGINE_CHOICES name (may carry an option: ``register:dis``).
    checkpoint - SAM checkpoint name for the sam engine ("" = none).
    axis - the annotated axis (auto = detected from the drawing).
    suggestCount - how many slices Suggest slices proposes.
    previewSegmentation - the preview of the last run, until it is accepted or rejected.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    segmentationNode: vtkMRMLSegmentationNode
    segmentId: str = ""
    engine: str = "auto"
    checkpoint: str = ""
    axis: Annotated[str, Choice(AXIS_CHOICES)] = "auto"
    suggestCount: Annotated[int, WithinRange(1, 20)] = 5
    previewSegmentation: vtkMRMLSegmentationNode


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
        self._job = None  # the running SAMFewShotJob, if any
        self._lastResult = None  # PropagationResult shown in the preview section
        self._suggestion = None  # {"numpy_axis": int, "slices": [int]} of the last Suggest slices
        self._previewSlices = []  # slice indices listed in sliceConfidenceList
        self._previewAxis = None
        self._checkpoints = []  # usable SAM checkpoint names
        self._checkpointsListed = False
        self._updatingGui = False
        self._pollTimer = None

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

        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self.onPollTimer)

        # Update the parameter node when the scene is closed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Widgets that connectGui cannot bind (segment selector, combo boxes with disabled entries)
        self.ui.segmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.engineComboBox.connect("currentIndexChanged(int)", self.onEngineChanged)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)

        # Buttons and lists
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.verifyModelButton.connect("clicked(bool)", self.onVerifyModels)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.onRefreshModels)
        self.ui.suggestButton.connect("clicked(bool)", self.onSuggest)
        self.ui.suggestedSlicesList.connect("currentRowChanged(int)", self.onSuggestedSliceSelected)
        self.ui.propagateButton.connect("clicked(bool)", self.onPropagate)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.acceptButton.connect("clicked(bool)", self.onAccept)
        self.ui.rejectButton.connect("clicked(bool)", self.onReject)
        self.ui.sliceConfidenceList.connect("currentRowChanged(int)", self.onConfidenceSliceSelected)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.installSamSupportButton.connect("clicked(bool)", self.onInstallSamSupport)

        # Atlas and batch are planned (their own issues): the sections only say so.
        self.ui.atlasNoteLabel.enabled = False
        self.ui.batchNoteLabel.enabled = False

        self.populateEngines()
        self.populateModels()
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.value = 0

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.cancelJobQuietly()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()
        self.updateDependenciesStatus()
        if not self._checkpointsListed:
            # List the SAM checkpoints once the panel is shown (runs `samfewshot weights list`).
            qt.QTimer.singleShot(0, self.onRefreshModels)

    def exit(self) -> None:
        """Called each time the user opens a different module (a running job keeps running)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed: stop a running job, forget the parameter node."""
        self.cancelJobQuietly()
        self._lastResult = None
        self.showPreviewSummary(None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

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
            # ui element that needs connection (inputVolumeSelector, axisComboBox, suggestCountSpinBox).
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiFromParameterNode)
        self.updateGuiFromParameterNode()

    # GUI state ---------------------------------------------------------------------------------

    def updateGuiFromParameterNode(self, caller=None, event=None) -> None:
        """Widgets that connectGui does not bind, and the enabled state of every button."""
        parameterNode = self._parameterNode
        running = self._job is not None
        self._updatingGui = True
        try:
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
        finally:
            self._updatingGui = False

        try:
            samEngine = commands.engine_family(parameterNode.engine) in commands.SAM_ENGINES
        except ValueError:  # an empty engine name in an old scene: propagationProblem says so
            samEngine = False
        self.ui.modelComboBox.enabled = samEngine and bool(self._checkpoints)

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
            need = commands.engine_requirements(parameterNode.engine, self.logic.torchAvailable(), self._checkpoints)
        except ValueError as error:
            return str(error)
        if need is not None:
            return f"Engine {parameterNode.engine}: {need}."
        return None

    def populateEngines(self) -> None:
        """Fill the Engine combo box; engines that cannot run yet are disabled with the reason as tooltip."""
        torchAvailable = self.logic.torchAvailable()
        combo = self.ui.engineComboBox
        wasBlocked = combo.blockSignals(True)
        try:
            combo.clear()
            for index, (engine, description) in enumerate(ENGINE_CHOICES):
                combo.addItem(engine, engine)
                need = commands.engine_requirements(engine, torchAvailable, self._checkpoints)
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

    def populateModels(self) -> None:
        """Fill the Model combo box with the usable SAM checkpoints."""
        combo = self.ui.modelComboBox
        wasBlocked = combo.blockSignals(True)
        try:
            combo.clear()
            for name in self._checkpoints:
                combo.addItem(name, name)
            if not self._checkpoints:
                combo.addItem("(no checkpoint: use Import file...)", "")
            selected = self._parameterNode.checkpoint if self._parameterNode else ""
            index = combo.findData(selected)
            combo.currentIndex = index if index >= 0 else 0
        finally:
            combo.blockSignals(wasBlocked)
        if self._parameterNode and self._checkpoints and self._parameterNode.checkpoint not in self._checkpoints:
            self._parameterNode.checkpoint = self._checkpoints[0]

    def updateDependenciesStatus(self) -> None:
        """Say in the Python packages section what is missing."""
        missing = self.logic.missingPythonRequirements(sam=False)
        samMissing = [requirement for requirement in self.logic.missingPythonRequirements(sam=True) if requirement not in missing]
        lines = ["Engines without weights: " + ("ready." if not missing else "missing " + ", ".join(missing) + ".")]
        samNeeds = list(samMissing) + ([] if self.logic.torchAvailable() else ["torch (PyTorch extension)"])
        lines.append("SAM engine: " + ("ready." if not samNeeds else "missing " + ", ".join(samNeeds) + "."))
        self.ui.dependenciesStatusLabel.text = "\n".join(lines)

    def showProgress(self, job) -> None:
        """Progress bar, status and elapsed time of a running job."""
        runner = job.runner
        self.ui.progressBar.value = int(round(100 * runner.tracker.fraction()))
        self.ui.statusLabel.text = f"{job.kind}: {runner.tracker.status_text()}"
        self.ui.elapsedLabel.text = progress_lines.format_elapsed(runner.elapsed_seconds)

    def showPreviewSummary(self, result) -> None:
        """Expected Dice and per-slice confidence of the preview (None clears the section)."""
        self.ui.sliceConfidenceList.clear()
        self._previewSlices = []
        self._previewAxis = None
        if result is None:
            self.ui.previewSummaryLabel.text = "No preview."
            self.ui.expectedDiceLabel.text = ""
            return
        expectedDice, slices = summarizeReport(result.report)
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
        if self._updatingGui or self._parameterNode is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the segmentation."):
            with slicer.util.NodeModify(self._parameterNode):
                self._parameterNode.segmentationNode = node
                self._parameterNode.segmentId = self.ui.segmentSelector.currentSegmentID() or ""

    def onSegmentChanged(self, segmentId) -> None:
        if self._updatingGui or self._parameterNode is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the segment."):
            self._parameterNode.segmentId = segmentId or ""

    def onEngineChanged(self, index) -> None:
        if self._updatingGui or self._parameterNode is None or index < 0:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the engine."):
            self._parameterNode.engine = self.ui.engineComboBox.itemData(index)

    def onModelChanged(self, index) -> None:
        if self._updatingGui or self._parameterNode is None or index < 0:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the model."):
            self._parameterNode.checkpoint = self.ui.modelComboBox.itemData(index) or ""

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

    # Handlers: SAM checkpoints -----------------------------------------------------------------

    def onRefreshModels(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not list the SAM checkpoints.", waitCursor=True):
            self._checkpointsListed = True
            try:
                self._checkpoints = self.logic.listCheckpoints()
                self.ui.modelComboBox.toolTip = "SAM checkpoint used by the sam engine."
            except RuntimeError as error:
                # Not fatal: the weightless engines still work; say why the list is empty.
                self._checkpoints = []
                self.ui.modelComboBox.toolTip = f"SAM checkpoints could not be listed: {error}"
                logging.warning(f"SAMFewShot: SAM checkpoints could not be listed: {error}")
            self.populateModels()
            self.populateEngines()
            self.updateGuiFromParameterNode()

    def onImportModel(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not import the checkpoint.", waitCursor=True):
            path = qt.QFileDialog.getOpenFileName(
                slicer.util.mainWindow(), "Import a SAM checkpoint", "", "PyTorch checkpoints (*.pth *.pt);;All files (*)"
            )
            if isinstance(path, (tuple, list)):  # (file name, selected filter) in some Qt bindings
                path = path[0] if path else ""
            if not path:
                return
            message = self.logic.importCheckpoint(path)
            self.ui.statusLabel.text = message
            self.onRefreshModels()

    def onVerifyModels(self) -> None:
        with slicer.util.tryWithErrorDisplay("Checkpoint verification failed.", waitCursor=True):
            message = self.logic.verifyCheckpoints()
            self.ui.statusLabel.text = message
            self.onRefreshModels()

    # Handlers: Python packages -----------------------------------------------------------------

    def setupPythonRequirements(self, sam: bool = False) -> bool:
        """Install missing Python packages on first use, after asking. Returns False if declined.

        torch comes from the PyTorch extension (PyTorchUtils, which asks again before it
        downloads); everything else from pip with Slicer's SimpleITK and numpy pinned.
        """
        missing = self.logic.missingPythonRequirements(sam=sam)
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
        self.logic.installPythonRequirements(sam=sam, askTorchConfirmation=True)
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
                self.onRefreshModels()

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
            self.startPolling(job)

    def onPropagate(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start the propagation.", waitCursor=True):
            parameterNode = self._parameterNode
            samEngine = commands.engine_family(parameterNode.engine) in commands.SAM_ENGINES
            if not self.setupPythonRequirements(sam=samEngine):
                return
            job = self.logic.startPropagation(
                parameterNode.inputVolume,
                parameterNode.segmentationNode,
                parameterNode.segmentId,
                engine=parameterNode.engine,
                checkpoint=parameterNode.checkpoint or None,
                axis=parameterNode.axis,
            )
            self.startPolling(job)

    def startPolling(self, job) -> None:
        self._job = job
        self.ui.progressBar.value = 0
        self.showProgress(job)
        self._pollTimer.start()
        self.updateGuiFromParameterNode()

    def onPollTimer(self) -> None:
        job = self._job
        if job is None:
            self._pollTimer.stop()
            return
        with slicer.util.tryWithErrorDisplay(f"{job.kind.capitalize()} failed."):
            try:
                self.logic.pollJob(job)
                self.showProgress(job)
                if job.running:
                    return
                self._pollTimer.stop()
                self._job = None
                self.ui.progressBar.value = 100 if job.runner.returncode == 0 else 0
                try:
                    if job.kind == "suggest":
                        self.finishSuggestion(job)
                    else:
                        self.finishPropagation(job)
                except Exception as error:
                    self.ui.statusLabel.text = f"{job.kind.capitalize()} failed: {error}"
                    raise
            finally:
                if self._job is None:
                    self._pollTimer.stop()
                self.updateGuiFromParameterNode()

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
        self._lastResult = result
        self.showPreviewSummary(result)
        self.ui.previewCollapsibleButton.collapsed = False
        self.ui.statusLabel.text = f"Done in {progress_lines.format_elapsed(result.seconds)}: review the preview, then Accept or Reject."

    def onCancel(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not cancel.", waitCursor=True):
            job = self._job
            self._pollTimer.stop()
            self._job = None
            if job is not None:
                self.logic.cancelJob(job)
                self.ui.statusLabel.text = f"{job.kind.capitalize()} cancelled; nothing was changed."
            self.ui.progressBar.value = 0
            self.updateGuiFromParameterNode()

    def cancelJobQuietly(self) -> None:
        """Stop a running job without dialogs (module cleanup, scene close)."""
        if self._pollTimer is not None:
            self._pollTimer.stop()
        job, self._job = self._job, None
        if job is not None:
            try:
                self.logic.cancelJob(job)
            except Exception as error:  # cleanup must not fail
                logging.warning(f"SAMFewShot: could not cancel the running job: {error}")

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


@dataclass
class SAMFewShotJob:
    """One ``samfewshot`` child process started by the logic.

    kind: "propagate" or "suggest". folder: temporary folder with its input/output files
    (removed when the job is finished or cancelled).
    """

    kind: str
    runner: ProcessRunner
    folder: str
    argv: list
    volumeNode: object
    segmentationNode: object = None
    segmentId: str = ""
    engine: str = ""
    imagePath: str = ""
    outputPath: str = ""
    reportPath: str = ""
    jsonPath: str = ""
    finished: bool = False

    @property
    def running(self) -> bool:
        return self.runner.running


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


class SAMFewShotLogic(ScriptedLoadableModuleLogic):
    """Runs the ``samfewshot`` command for the module; usable without the GUI (and in tests).

    The logic takes nodes and plain values, never touches widgets, and raises ValueError naming the
    bad value. Long work runs in a child process: start*() returns a SAMFewShotJob, pollJob() is
    called from a timer (or waitForJob() blocks), finish*() reads the result, cancelJob() stops the
    whole process tree and leaves the scene unchanged.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return SAMFewShotParameterNode(super().getParameterNode())

    # Environment -------------------------------------------------------------------------------

    @staticmethod
    def pythonExecutable() -> str:
        """Slicer's Python interpreter for child processes (PythonSlicer)."""
        python = shutil.which("PythonSlicer")
        if not python:
            raise RuntimeError("PythonSlicer was not found: the samfewshot command cannot be started")
        return python

    @staticmethod
    def childEnvironment() -> dict:
        """The environment of the child: Slicer's startup environment, with the folder holding
        SAMFewShotLib on PYTHONPATH (``PythonSlicer -m SAMFewShotLib``)."""
        environment = dict(slicer.util.startupEnvironment())
        if SAMFEWSHOTLIB_PARENT_FOLDER:
            existing = environment.get("PYTHONPATH", "")
            environment["PYTHONPATH"] = SAMFEWSHOTLIB_PARENT_FOLDER + (os.pathsep + existing if existing else "")
        return environment

    @staticmethod
    def torchAvailable() -> bool:
        """Whether PyTorch is installed in Slicer's Python. Cheap (called on every GUI update):
        torch is not imported into Slicer (PyTorchUtilsLogic.torchInstalled would import it)."""
        return importlib.util.find_spec("torch") is not None

    @staticmethod
    def segmentEditorSelection():
        """(source volume, segmentation node, selected segment ID) of the Segment Editor, each None if unset."""
        editorNode = slicer.mrmlScene.GetSingletonNode("SegmentEditor", "vtkMRMLSegmentEditorNode")
        if editorNode is None:
            return None, None, None
        getSourceVolume = getattr(editorNode, "GetSourceVolumeNode", None) or editorNode.GetMasterVolumeNode
        return getSourceVolume(), editorNode.GetSegmentationNode(), editorNode.GetSelectedSegmentID()

    # Python packages ---------------------------------------------------------------------------

    @staticmethod
    def missingPythonRequirements(sam: bool = False) -> list:
        """Requirements (pip strings) that are not satisfied; ``sam`` adds the SAM engine's."""
        requirements = list(PYTHON_REQUIREMENTS) + (list(SAM_PYTHON_REQUIREMENTS) if sam else [])
        return [requirement for requirement in requirements if not requirementSatisfied(requirement)]

    def installPythonRequirements(self, sam: bool = False, askTorchConfirmation: bool = True) -> None:
        """Install what :meth:`missingPythonRequirements` lists (the caller asked the user first).

        torch/torchvision come from the PyTorch extension (PyTorchUtilsLogic.installTorch); the rest
        is installed with slicer.util.pip_install and a constraints file pinning Slicer's own
        SimpleITK, numpy (and torch), so none of them is ever replaced.

        Raises:
            RuntimeError: the PyTorch extension is missing, a pinned package is too old, or pip
                failed (the message says what to do offline).
        """
        if sam and not self.torchAvailable():
            self.installTorch(askConfirmation=askTorchConfirmation)
        missing = self.missingPythonRequirements(sam=sam)
        if not missing:
            return
        pinned = {name.lower() for name in PINNED_PACKAGES}
        conflicts = [requirement for requirement in missing if requirementName(requirement).lower() in pinned]
        if conflicts:
            raise RuntimeError(
                f"SAMFewShot needs {', '.join(conflicts)}, but the installed version comes with Slicer and is not "
                "replaced (Slicer depends on it). Use a more recent Slicer."
            )
        folder = tempfile.mkdtemp(prefix="SAMFewShot-pip-", dir=slicer.app.temporaryPath)
        try:
            constraintsPath = os.path.join(folder, "constraints.txt")
            with open(constraintsPath, "w", encoding="utf-8") as constraintsFile:
                constraintsFile.write("\n".join(pinnedPackageConstraints()) + "\n")
            logging.info(f"SAMFewShot: installing {missing} (constraints: {pinnedPackageConstraints()})")
            try:
                slicer.util.pip_install(["-c", constraintsPath, *missing])
            except Exception as error:
                raise RuntimeError(offlineInstallInstructions(missing) + f"\n\nDetails: {error}") from error
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        importlib.invalidate_caches()
        stillMissing = self.missingPythonRequirements(sam=sam)
        if stillMissing:
            raise RuntimeError(
                f"These packages are still missing after installation: {', '.join(stillMissing)}. "
                "Restart Slicer and try again."
            )

    @staticmethod
    def installTorch(askConfirmation: bool = True) -> None:
        """PyTorch through the PyTorch extension (it asks before downloading when askConfirmation)."""
        try:
            import PyTorchUtils
        except ImportError:
            raise RuntimeError(
                "The sam engine needs PyTorch, which SAMFewShot installs through the PyTorch extension. "
                "Install the 'PyTorch' extension from the Extensions Manager, restart Slicer and try again."
            ) from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if torchLogic.torchInstalled():
            return
        torch = torchLogic.installTorch(
            askConfirmation=askConfirmation,
            torchVersionRequirement=TORCH_VERSION_REQUIREMENT,
            torchvisionVersionRequirement=TORCHVISION_VERSION_REQUIREMENT,
        )
        if torch is None:
            raise ValueError("PyTorch was not installed (cancelled); the sam engine needs it")

    # SAM checkpoints ---------------------------------------------------------------------------

    def runCommand(self, argv: list, timeoutSeconds: float) -> ProcessRunner:
        """Run a short ``samfewshot`` command to completion (blocking); raise RuntimeError on failure."""
        runner = ProcessRunner()
        runner.start(argv, env=self.childEnvironment())
        try:
            returncode = runner.wait(timeout=timeoutSeconds)
        except TimeoutError:
            runner.cancel()
            raise RuntimeError(f"{' '.join(argv[2:5])} did not finish within {timeoutSeconds:.0f} s") from None
        if returncode != 0:
            raise RuntimeError(runner.error_message() or f"{' '.join(argv[2:5])} failed with exit code {returncode}")
        return runner

    def listCheckpoints(self, timeoutSeconds: float = 120) -> list:
        """Names of the usable (present, verified) SAM checkpoints: ``samfewshot weights list --json``."""
        runner = self.runCommand(commands.weights_list_command(self.pythonExecutable()), timeoutSeconds)
        return commands.present_checkpoints("\n".join(runner.stdout_lines))

    def weightsCommand(self, *arguments: str) -> list:
        """argv of ``samfewshot weights ...`` (slicer_support has builders only for ``weights list``)."""
        return [self.pythonExecutable(), "-m", commands.MODULE, "weights", *arguments, "--progress", "none"]

    def importCheckpoint(self, path: str, timeoutSeconds: float = 1800) -> str:
        """Copy a checkpoint file into the weights cache (sha256-checked); returns the command's report."""
        if not path or not os.path.isfile(path):
            raise ValueError(f"Checkpoint file {path!r} does not exist")
        runner = self.runCommand(self.weightsCommand("import", os.fspath(path)), timeoutSeconds)
        return "\n".join(runner.stdout_lines) or f"Imported {path}"

    def verifyCheckpoints(self, timeoutSeconds: float = 1800) -> str:
        """Re-hash the imported checkpoints (raises RuntimeError naming the ones that fail)."""
        runner = self.runCommand(self.weightsCommand("verify"), timeoutSeconds)
        return "\n".join(runner.stdout_lines) or "No checkpoints imported."

    # Inputs ------------------------------------------------------------------------------------

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
        if not segmentId or segmentationNode.GetSegmentation().GetSegment(segmentId) is None:
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
        """Write the volume to ``path`` (.nrrd): Slicer writes the LPS geometry itself; exportNode
        leaves the node's storage node (where the scene saves it) untouched."""
        with self.temporarySceneNodes():
            if not slicer.util.exportNode(volumeNode, path, {}):
                raise RuntimeError(f"Volume '{volumeNode.GetName()}' could not be written to {path}")

    def segmentMask(self, volumeNode, segmentationNode, segmentId) -> np.ndarray:
        """The segment as a (k, j, i) uint8 0/1 array on the volume's voxel grid (a copy)."""
        with self.temporarySceneNodes():
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
        return (np.asarray(mask) > 0).astype(np.uint8)

    @staticmethod
    def writeLabelsLike(labels: np.ndarray, referenceImagePath: str, path: str) -> None:
        """Write a (k, j, i) label array with the geometry of the image file Slicer wrote, so the
        annotation is on exactly the image grid (same size, spacing, origin, direction)."""
        import SimpleITK as sitk

        reference = sitk.ReadImage(referenceImagePath)
        image = sitk.GetImageFromArray(labels.astype(np.uint8))
        if image.GetSize() != reference.GetSize():
            raise RuntimeError(f"Label array size {image.GetSize()} differs from the image size {reference.GetSize()}")
        image.CopyInformation(reference)
        sitk.WriteImage(image, path, True)

    @staticmethod
    def readLabelsLike(path: str, referenceImagePath: str) -> np.ndarray:
        """Read the child's label file as a (k, j, i) array after checking it is on the image grid."""
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(referenceImagePath)
        reader.ReadImageInformation()
        labelsImage = sitk.ReadImage(path)
        same = (
            labelsImage.GetSize() == reader.GetSize()
            and np.allclose(labelsImage.GetSpacing(), reader.GetSpacing(), rtol=1e-5, atol=1e-6)
            and np.allclose(labelsImage.GetOrigin(), reader.GetOrigin(), rtol=1e-5, atol=1e-4)
            and np.allclose(labelsImage.GetDirection(), reader.GetDirection(), atol=1e-6)
        )
        if not same:
            raise RuntimeError(f"The result {path} is not on the input volume's grid")
        return sitk.GetArrayFromImage(labelsImage)

    # Jobs --------------------------------------------------------------------------------------

    def newJobFolder(self) -> str:
        return tempfile.mkdtemp(prefix="SAMFewShot-", dir=slicer.app.temporaryPath)

    def startPropagation(
        self,
        volumeNode,
        segmentationNode,
        segmentId: str,
        engine: str = "auto",
        checkpoint: Optional[str] = None,
        axis: str = "auto",
        refine: Optional[int] = None,
        emptySlices=None,
    ) -> SAMFewShotJob:
        """Export the volume and the drawn segment and start ``samfewshot propagate`` on them.

        Nothing in the scene changes. Raises ValueError for bad inputs (no volume, unknown segment,
        empty segment, unknown engine or axis).
        """
        self.checkInputs(volumeNode, segmentationNode, segmentId)
        mask = self.segmentMask(volumeNode, segmentationNode, segmentId)
        if not mask.any():
            segmentName = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
            raise ValueError(f"Segment '{segmentName}' is empty: draw the structure on 1-10 slices first")
        folder = self.newJobFolder()
        try:
            imagePath = os.path.join(folder, "image.nrrd")
            annotationPath = os.path.join(folder, "annotation.nrrd")
            outputPath = os.path.join(folder, "result.nrrd")
            reportPath = os.path.join(folder, "report.json")
            argv = commands.propagate_command(
                self.pythonExecutable(), imagePath, annotationPath, outputPath, reportPath,
                engine=engine, checkpoint=checkpoint, refine=refine, axis=axis, empty_slices=emptySlices,
            )
            self.exportVolume(volumeNode, imagePath)
            self.writeLabelsLike(mask, imagePath, annotationPath)
            runner = ProcessRunner()
            runner.start(argv, env=self.childEnvironment(), cwd=folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        logging.info(f"SAMFewShot: started {' '.join(argv)}")
        return SAMFewShotJob(
            kind="propagate", runner=runner, folder=folder, argv=argv, volumeNode=volumeNode,
            segmentationNode=segmentationNode, segmentId=segmentId, engine=engine, imagePath=imagePath,
            outputPath=outputPath, reportPath=reportPath,
        )

    def startSuggestion(self, volumeNode, count: int, axis: str = "axial", sliceRange=None, checkpoint=None) -> SAMFewShotJob:
        """Export the volume and start ``samfewshot suggest`` (which slices to draw on)."""
        self.checkInputs(volumeNode)
        folder = self.newJobFolder()
        try:
            imagePath = os.path.join(folder, "image.nrrd")
            jsonPath = os.path.join(folder, "suggestion.json")
            argv = commands.suggest_command(
                self.pythonExecutable(), imagePath, k=count, slice_range=sliceRange, axis=axis,
                checkpoint=checkpoint, json_path=jsonPath,
            )
            self.exportVolume(volumeNode, imagePath)
            runner = ProcessRunner()
            runner.start(argv, env=self.childEnvironment(), cwd=folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return SAMFewShotJob(kind="suggest", runner=runner, folder=folder, argv=argv, volumeNode=volumeNode,
                             imagePath=imagePath, jsonPath=jsonPath)

    @staticmethod
    def pollJob(job: SAMFewShotJob) -> list:
        """Read the child's new output without blocking; returns the new progress events."""
        return job.runner.poll()

    def waitForJob(self, job: SAMFewShotJob, timeoutSeconds: float = 1800) -> int:
        """Block until the job finished (tests, scripts); the GUI polls with a timer instead.

        Raises:
            TimeoutError: still running after ``timeoutSeconds`` (the job is cancelled).
        """
        deadline = time.monotonic() + timeoutSeconds
        while True:
            job.runner.poll()
            if not job.runner.running:
                return job.runner.returncode
            if time.monotonic() > deadline:
                self.cancelJob(job)
                raise TimeoutError(f"samfewshot {job.kind} did not finish within {timeoutSeconds:.0f} s")
            slicer.app.processEvents()
            time.sleep(0.05)

    @staticmethod
    def cancelJob(job: SAMFewShotJob) -> None:
        """Stop the child and every process it started; remove its temporary files. The scene is
        not touched (the result of a cancelled job is never loaded)."""
        try:
            job.runner.cancel()
        finally:
            job.finished = True
            shutil.rmtree(job.folder, ignore_errors=True)

    @staticmethod
    def jobFailure(job: SAMFewShotJob) -> Optional[Exception]:
        """The error of a finished job (ValueError for bad input, exit 2), or None on success."""
        runner = job.runner
        if runner.cancelled:
            return RuntimeError(f"samfewshot {job.kind} was cancelled")
        if runner.returncode == 0:
            return None
        message = runner.error_message() or f"samfewshot {job.kind} exited with code {runner.returncode}"
        return ValueError(message) if runner.returncode == 2 else RuntimeError(message)

    def finishPropagation(self, job: SAMFewShotJob) -> PropagationResult:
        """Read the result of a finished propagation (the scene is not changed)."""
        if job.kind != "propagate":
            raise ValueError(f"Job kind must be 'propagate', not {job.kind!r}")
        if job.running:
            raise RuntimeError("The propagation is still running")
        if job.finished:
            raise RuntimeError("This propagation was already finished or cancelled")
        try:
            failure = self.jobFailure(job)
            if failure is not None:
                raise failure
            labels = (self.readLabelsLike(job.outputPath, job.imagePath) > 0).astype(np.uint8)
            report = progress_lines.read_report(job.reportPath)
        finally:
            job.finished = True
            shutil.rmtree(job.folder, ignore_errors=True)
        segment = job.segmentationNode.GetSegmentation().GetSegment(job.segmentId)
        return PropagationResult(
            labels=labels, report=report, seconds=job.runner.elapsed_seconds, volumeNode=job.volumeNode,
            segmentationNode=job.segmentationNode, segmentId=job.segmentId,
            segmentName=segment.GetName() if segment is not None else job.segmentId, engine=job.engine,
        )

    def finishSuggestion(self, job: SAMFewShotJob) -> dict:
        """{"axis", "numpy_axis", "slices"} of a finished suggest job."""
        if job.kind != "suggest":
            raise ValueError(f"Job kind must be 'suggest', not {job.kind!r}")
        if job.running:
            raise RuntimeError("Suggest slices is still running")
        try:
            failure = self.jobFailure(job)
            if failure is not None:
                raise failure
            suggestion = progress_lines.read_report(job.jsonPath)
        finally:
            job.finished = True
            shutil.rmtree(job.folder, ignore_errors=True)
        return {
            "axis": suggestion.get("axis", ""),
            "numpy_axis": int(suggestion["numpy_axis"]),
            "slices": [int(index) for index in suggestion["slices"]],
        }

    def propagate(self, volumeNode, segmentationNode, segmentId: str, engine: str = "auto", checkpoint=None,
                  axis: str = "auto", refine=None, emptySlices=None, timeoutSeconds: float = 1800) -> PropagationResult:
        """Blocking propagation (tests, scripts): start, wait, read the result."""
        job = self.startPropagation(volumeNode, segmentationNode, segmentId, engine=engine, checkpoint=checkpoint,
                                    axis=axis, refine=refine, emptySlices=emptySlices)
        self.waitForJob(job, timeoutSeconds)
        return self.finishPropagation(job)

    # Preview -----------------------------------------------------------------------------------

    def createPreview(self, result: PropagationResult):
        """A new segmentation node "<segment> (preview)" holding the result; the user's segmentation
        is not touched. Its attributes say where Accept writes it."""
        target = result.segmentationNode.GetSegmentation().GetSegment(result.segmentId)
        if target is None:
            raise ValueError(f"Segment {result.segmentId!r} was removed while the propagation ran")
        name = f"{result.segmentName} (preview)"
        keepNodeIds = set()
        preview = None
        try:
            with self.temporarySceneNodes(keepNodeIds):
                preview = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
                preview.CreateDefaultDisplayNodes()
                keepNodeIds.update(self.nodeAndDependentIds(preview))
                preview.SetReferenceImageGeometryParameterFromVolumeNode(result.volumeNode)
                previewSegmentId = preview.GetSegmentation().AddEmptySegment("", name, target.GetColor())
                slicer.util.updateSegmentBinaryLabelmapFromArray(result.labels, preview, previewSegmentId, result.volumeNode)
                preview.GetDisplayNode().SetOpacity2DFill(0.35)
                preview.SetAttribute(PREVIEW_SEGMENTATION_ATTRIBUTE, result.segmentationNode.GetID())
                preview.SetAttribute(PREVIEW_SEGMENT_ATTRIBUTE, result.segmentId)
                preview.SetAttribute(PREVIEW_VOLUME_ATTRIBUTE, result.volumeNode.GetID())
                preview.SetAttribute(PREVIEW_ENGINE_ATTRIBUTE, result.engine)
        except BaseException:
            self.removePreview(preview)
            raise
        return preview

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

    @staticmethod
    def removePreview(previewNode) -> None:
        """Remove the preview node and its display and storage nodes (Reject)."""
        if previewNode is None or previewNode.GetScene() is None:
            return
        scene = previewNode.GetScene()
        dependents = [previewNode.GetNthDisplayNode(index) for index in range(previewNode.GetNumberOfDisplayNodes())]
        dependents.append(previewNode.GetStorageNode())
        scene.RemoveNode(previewNode)
        for node in dependents:
            if node is not None and node.GetScene() is not None:
                scene.RemoveNode(node)

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

    def drawBall(self):
        """MRHead with a bright ball (radius 25 mm) painted in; the ball drawn on 3 slices 9 apart.

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
        drawnSlices = [int(center[0]) - 9, int(center[0]), int(center[0]) + 9]
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
