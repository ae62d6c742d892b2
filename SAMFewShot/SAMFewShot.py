"""SAMFewShot: draw a structure on a few slices, get the whole 3D segment; or apply a one-shot
atlas; or run either over a whole study.

Laid out as Slicer's scripted-module template: Module (also registers the Segment Editor effect
"Propagate" at startup), ParameterNode, Widget, Logic, Test. The module is a thin layer over the
``samfewshot`` command (SAMFewShotLib) run in child processes; its panels (propagation, weights,
atlas, batch, Python packages) and logic parts (jobs, scene, propagation, weights, packages,
atlas, batch) are in the SAMFewShotSlicerLib package beside this file, the Propagate effect in
SegmentEditorPropagate/, and the pure helpers in ``SAMFewShotLib.slicer_support``, tested
without Slicer.
"""

import os
import sys
import importlib
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

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # Slicer adds it; scripts and tests may not
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from SAMFewShotSlicerLib.lib_folder import MODULE_FOLDER, SAMFEWSHOTLIB_PARENT_FOLDER  # noqa: E402, F401
from SAMFewShotLib.slicer_support import atlas_commands  # noqa: E402
from SAMFewShotSlicerLib import editor_bridge  # noqa: E402
from SAMFewShotSlicerLib.atlas_logic import AtlasLogic  # noqa: E402
from SAMFewShotSlicerLib.atlas_panel import AtlasPanel  # noqa: E402
from SAMFewShotSlicerLib.batch_logic import BatchLogic  # noqa: E402
from SAMFewShotSlicerLib.batch_panel import BATCH_INPUT_CHOICES, BATCH_MODEL_CHOICES, BatchPanel  # noqa: E402
from SAMFewShotSlicerLib.child_jobs import ChildJobs  # noqa: E402
from SAMFewShotSlicerLib.engine_choices import AXIS_CHOICES  # noqa: E402
from SAMFewShotSlicerLib.packages_panel import PackagesPanel  # noqa: E402
from SAMFewShotSlicerLib.preview_panel import PreviewPanel  # noqa: E402
from SAMFewShotSlicerLib.propagation_logic import PropagationLogic  # noqa: E402
from SAMFewShotSlicerLib.propagation_panel import PropagationPanel  # noqa: E402
from SAMFewShotSlicerLib.python_packages import PythonPackages  # noqa: E402
from SAMFewShotSlicerLib.scene_exchange import SceneExchange  # noqa: E402
from SAMFewShotSlicerLib.weights_logic import WeightsLogic  # noqa: E402
from SAMFewShotSlicerLib.weights_panel import WeightsPanel  # noqa: E402

#: The Segment Editor effect this module registers (loaded by path: Slicer loads every .py file
#: beside this one as a module, so the effect lives in a subfolder).
PROPAGATE_EFFECT_PATH = os.path.join(MODULE_FOLDER, "SegmentEditorPropagate", "SegmentEditorEffect.py")


def registerPropagateEffect() -> None:
    """Register the "Propagate" Segment Editor effect (as SegmentEditorExtraEffects does)."""
    import qSlicerSegmentationsEditorEffectsPythonQt as effects

    instance = effects.qSlicerSegmentEditorScriptedEffect(None)
    instance.setPythonSource(PROPAGATE_EFFECT_PATH.replace("\\", "/"))
    instance.self().register()


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
        self.parent.contributors = ["REPLACE-WITH-MAINTAINER-NAME (REPLACE-WITH-ORGANIZATION)"]  # as CMakeLists.txt
        self.parent.helpText = """
In the <b>Segment Editor</b>: draw a structure on 1-10 slices, choose the <b>Propagate</b> effect and click
<b>Initialize</b>: the whole 3D segment is computed in the background and previewed (drawn slices filled,
propagated voxels outlined, low-confidence slices in orange; <b>Next low-confidence slice</b> shows them).
Correct a slice and the preview updates; <b>Apply</b> writes it with the editor's masking (one Undo step),
<b>Cancel</b> removes it. This module adds the full options, <b>Suggest slices</b>, one-shot <b>atlases</b>,
<b>batches</b> over a study, SAM <b>checkpoints</b> (Import file, Download) and the first-use installation.
"""
        self.parent.acknowledgementText = """
Engines: ITK morphological contour interpolation (Slicer's Fill between slices); SAM-MPA mask
propagation; Segment Anything (Meta AI), MedSAM and MobileSAM; elastix atlas registration. The
module layout follows the Slicer scripted module template (Jean-Christophe Fillion-Robin, Kitware;
Andras Lasso, PerkLab; Steve Pieper, Isomics); the effect registration follows SegmentEditorExtraEffects.
"""
        slicer.app.connect("startupCompleted()", registerPropagateEffect)


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
    device - where the SAM engines run: auto, cpu, cuda or mps.
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
    device: str = "auto"
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
        self.updatingGui = False
        self.panels = []

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SAMFewShot.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # Set scene in MRML widgets (the .ui connects mrmlSceneChanged to each MRML widget's setMRMLScene).
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SAMFewShotLogic()
        self.packagesPanel = PackagesPanel(self)
        self.weightsPanel = WeightsPanel(self)
        self.propagationPanel = PropagationPanel(self)
        self.previewPanel = PreviewPanel(self)
        self.atlasPanel = AtlasPanel(self)
        self.batchPanel = BatchPanel(self)
        self.panels = [self.packagesPanel, self.weightsPanel, self.propagationPanel, self.previewPanel, self.atlasPanel,
                       self.batchPanel]
        for panel in self.panels:
            panel.setup()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()  # needed for module reload

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.cancelJobsQuietly()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()
        self.packagesPanel.updateStatus()
        if not self.weightsPanel.listed and self.logic.packages.samReady():
            # Listed only once the SAM packages are installed (`samfewshot weights list`, in the background).
            qt.QTimer.singleShot(0, self.weightsPanel.onRefreshModels)

    def exit(self) -> None:
        """Called each time the user opens a different module (running jobs keep running)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiFromParameterNode)

    def onReload(self) -> None:
        """Developer mode Reload: reload SAMFewShotSlicerLib and SAMFewShotLib.slicer_support too."""
        with slicer.util.tryWithErrorDisplay("Reload failed."):
            self.cancelJobsQuietly()
            names = [n for n in sys.modules if n.startswith(("SAMFewShotSlicerLib", "SAMFewShotLib.slicer_support"))]
            for name in sorted(names, key=lambda n: (n.startswith("SAMFewShotSlicerLib"), n.endswith("_panel"), n)):
                importlib.reload(sys.modules[name])
            ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed: stop running jobs, forget the parameter node."""
        self.cancelJobsQuietly()
        self.previewPanel.showSummary(None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def cancelJobsQuietly(self) -> None:
        """Stop every running job without dialogs (module cleanup, scene close, reload)."""
        for panel in self.panels:
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
        segmentMissing = (segmentationNode is None or not parameterNode.segmentId
                          or segmentationNode.GetSegmentation().GetSegment(parameterNode.segmentId) is None)
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
            # In the .ui file, the dynamic property "SlicerParameterName" names each bound widget's field.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiFromParameterNode)
        self.updateGuiFromParameterNode()

    def updateGuiFromParameterNode(self, caller=None, event=None) -> None:
        """Widgets connectGui does not bind, and the enabled state of every button (called when
        the parameter node changes or a job starts or ends, never while a job just progresses)."""
        parameterNode = self._parameterNode
        running = self.propagationPanel.running
        self.updatingGui = True
        try:
            self.weightsPanel.updateButtons(running)
            self.atlasPanel.updateGui(parameterNode)
            self.batchPanel.updateGui(parameterNode)
            self.propagationPanel.updateGui(parameterNode, running)
            self.previewPanel.updateGui(parameterNode, running)
        finally:
            self.updatingGui = False


#
# SAMFewShotLogic
#


class SAMFewShotLogic(ScriptedLoadableModuleLogic):
    """Runs the ``samfewshot`` command for the module; usable without the GUI (and in tests).

    Composed of parts that take nodes and plain values, never touch widgets and raise ValueError
    naming the bad value: ``jobs`` (child processes: start, poll, wait, cancel, read), ``scene``
    (volumes and segments to and from the child's files, previews), ``propagation`` (propagate,
    suggest, preview), ``weights`` (SAM checkpoints), ``packages`` (first-use installation),
    ``atlas`` and ``batch``.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.jobs = ChildJobs()
        self.scene = SceneExchange()
        self.packages = PythonPackages()
        self.propagation = PropagationLogic(self.jobs, self.scene)
        self.weights = WeightsLogic(self.jobs)
        self.atlas = AtlasLogic(self.jobs, self.scene)
        self.batch = BatchLogic(self.jobs, self.scene)

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


#
# SAMFewShotTest
#


class SAMFewShotTest(ScriptedLoadableModuleTest):
    """Quick self-test for Slicer's CI: the module and its effect load, interpolate and register run
    on a small synthetic volume, preview / Apply (editor masking) / Undo. The heavy tests (cancel
    of a long elastix run, an atlas made and applied on MRHead) run only when the environment
    variable SAMFEWSHOT_HEAVY_SELF_TEST is 1, as TotalSegmentator keeps its logic test opt-in.

    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        """Reset the scene; install the weightless engines' packages if missing (testing mode
        answers the confirmation itself)."""
        slicer.mrmlScene.Clear()
        self.logic = SAMFewShotLogic()
        if self.logic.packages.missingPythonRequirements(sam=False):
            self.logic.packages.installPythonRequirements(sam=False)

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_EffectIsRegistered()
        self.setUp()
        self.test_InterpolateAndRegisterOnSyntheticBall()
        self.setUp()
        self.test_PreviewApplyWithMaskingAndUndo()
        if os.environ.get("SAMFEWSHOT_HEAVY_SELF_TEST") == "1":
            from SAMFewShotSlicerLib.heavy_self_test import runHeavySelfTests

            runHeavySelfTests(self)

    def drawnBall(self, drawnOffsets=(-6, 0, 6)):
        """A 48^3 synthetic volume (1.5 mm voxels) with a bright ball of radius 12 mm, drawn on
        the axial slices at ``drawnOffsets`` from its centre.

        Returns (volume, segmentation, segmentId, ball (k, j, i) bool, drawn slice indices)."""
        k, j, i = np.ogrid[:48, :48, :48]
        ball = ((k - 24) ** 2 + (j - 24) ** 2 + (i - 24) ** 2) * 1.5 ** 2 <= 12.0 ** 2
        voxels = (np.random.default_rng(0).normal(100, 5, ball.shape) + 400 * ball).astype(np.int16)
        volume = slicer.util.addVolumeFromArray(voxels, name="SAMFewShotBall")
        volume.SetSpacing(1.5, 1.5, 1.5)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "SAMFewShotTest")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        segmentId = segmentation.GetSegmentation().AddEmptySegment("", "ball")
        drawnSlices = [24 + d for d in drawnOffsets]
        drawn = np.zeros(ball.shape, np.uint8)
        drawn[drawnSlices] = ball[drawnSlices]
        slicer.util.updateSegmentBinaryLabelmapFromArray(drawn, segmentation, segmentId, volume)
        return volume, segmentation, segmentId, ball, drawnSlices

    @staticmethod
    def dice(a, b) -> float:
        a, b = np.asarray(a, bool), np.asarray(b, bool)
        total = a.sum() + b.sum()
        return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total

    def test_EffectIsRegistered(self):
        """The module registered the Propagate effect in the Segment Editor at startup."""
        self.assertTrue(os.path.isfile(PROPAGATE_EFFECT_PATH))
        self.assertIsNotNone(editor_bridge.segmentEditorWidget().effectByName(editor_bridge.PROPAGATE_EFFECT_NAME))

    def test_InterpolateAndRegisterOnSyntheticBall(self):
        """Drawn slices come back as drawn; between them the ball is found; the segment is unchanged."""
        volume, segmentation, segmentId, ball, drawnSlices = self.drawnBall()
        drawnBefore = self.logic.scene.segmentMask(volume, segmentation, segmentId)
        for engine in ("interpolate", "register"):
            result = self.logic.propagation.propagate(volume, segmentation, segmentId, engine=engine, timeoutSeconds=600)
            labels = result.labels.astype(bool)
            for index in drawnSlices:
                self.assertTrue(np.array_equal(labels[index], ball[index]), f"{engine}: slice {index} changed")
            between = slice(drawnSlices[0], drawnSlices[-1] + 1)
            self.assertGreater(self.dice(labels[between], ball[between]), 0.85, engine)
            self.assertTrue(np.array_equal(self.logic.scene.segmentMask(volume, segmentation, segmentId), drawnBefore))
            self.delayDisplay(f"{engine}: Dice between the drawn slices {self.dice(labels[between], ball[between]):.3f}")

    def test_PreviewApplyWithMaskingAndUndo(self):
        """The preview holds drawn / propagated / low-confidence parts; Reject leaves the scene as
        it was; Apply honours the editor's editable area and is one Undo step."""
        volume, segmentation, segmentId, ball, drawnSlices = self.drawnBall()
        other = segmentation.GetSegmentation().AddEmptySegment("", "other")
        blocker = np.zeros(ball.shape, np.uint8)
        blocker[27] = 1  # a whole slice of another segment, between the drawn ones
        slicer.util.updateSegmentBinaryLabelmapFromArray(blocker, segmentation, other, volume)
        drawn = self.logic.scene.segmentMask(volume, segmentation, segmentId)
        result = self.logic.propagation.propagate(volume, segmentation, segmentId, engine="interpolate", timeoutSeconds=600)

        nodesBefore = self.logic.scene.sceneNodeIds()
        preview, parts = self.logic.propagation.createPreview(result)
        self.assertEqual(preview.GetSegmentation().GetNumberOfSegments(), 3)
        self.assertTrue(np.array_equal(parts.drawn[drawnSlices], drawn[drawnSlices]))
        self.logic.scene.removePreview(preview)
        self.assertEqual(self.logic.scene.sceneNodeIds(), nodesBefore)

        slicer.util.selectModule("SegmentEditor")  # the test's own setup: the user edits this segmentation
        editor = editor_bridge.segmentEditorWidget()
        editor.setSegmentationNode(segmentation)
        editor.setSourceVolumeNode(volume)
        editorNode = editor.mrmlSegmentEditorNode()
        editorNode.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments)
        preview, parts = self.logic.propagation.createPreview(result)
        undoable = editor_bridge.applyPreview(self.logic.propagation.previewLabelmaps(preview), segmentation, segmentId)
        self.logic.scene.removePreview(preview)
        self.assertTrue(undoable)
        written = self.logic.scene.segmentMask(volume, segmentation, segmentId)
        self.assertFalse(written[27].any(), "editable area outside all segments: the other segment's slice stays free")
        self.assertTrue(np.array_equal(written[26], result.labels[26]))
        editor.undo()
        self.assertTrue(np.array_equal(self.logic.scene.segmentMask(volume, segmentation, segmentId), drawn))
        editorNode.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere)
        self.delayDisplay("Preview, Apply with masking and Undo passed")
