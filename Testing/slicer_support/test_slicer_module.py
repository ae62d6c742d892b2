"""Static checks of the Slicer module SAMFewShot/ (SAMFewShot.py and its SAMFewShotSlicerLib
package), which run without Slicer.

3D Slicer cannot run here, so the module is checked statically (AST, .ui XML, CMake lists);
Testing/slicer_support/test_slicer_module_logic.py imports it with stand-in ``slicer``/``qt``/``vtk`` modules and
runs its logic against the real ``samfewshot`` child process.

The Slicer / Qt / CTK / VTK API the module calls is pinned in :data:`CHECKED_APIS`: each entry names
the source file where it was confirmed to exist (read through the reference search, not guessed),
and :func:`test_module_calls_only_checked_slicer_apis` fails when the module calls anything else.
The module's own self-test (SAMFewShotTest, run inside Slicer) covers what needs Slicer.
"""

from __future__ import annotations

import ast
import inspect
import py_compile
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "SAMFewShot"
MODULE_FILE = MODULE_DIR / "SAMFewShot.py"
#: The module's own package of panels and logic parts (Slicer loads every .py file beside
#: SAMFewShot.py as a module, so they live in a package).
PACKAGE_DIR = MODULE_DIR / "SAMFewShotSlicerLib"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SAMFewShot.ui"
#: The Segment Editor effect "Propagate" (loaded by path, registered by the module at startup).
EFFECT_FILE = MODULE_DIR / "SegmentEditorPropagate" / "SegmentEditorEffect.py"
MODULE_CMAKE = MODULE_DIR / "CMakeLists.txt"
EXTENSION_CMAKE = ROOT / "CMakeLists.txt"
LIB_DIR = ROOT / "SAMFewShotLib"

SLICER_UTIL = "Slicer/Slicer Base/Python/slicer/util.py"
SLICER_UTIL_NOTE = SLICER_UTIL + " (current version read in the jamesobutler/Slicer fork of Slicer main)"

#: Every attribute chain rooted at slicer, qt, ctk, vtk (and the Slicer modules SampleData,
#: PyTorchUtils) that the module's files use, with the source where it was confirmed to exist.
#: ``()`` in a chain stands for a call (``slicer.util.getModuleWidget().editor``).
CHECKED_APIS = {
    # slicer.ScriptedLoadableModule (the scripted-module template's base classes)
    "slicer.ScriptedLoadableModule.ScriptedLoadableModule": (
        "Slicer/Slicer Base/Python/slicer/ScriptedLoadableModule.py"
    ),
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleWidget": (
        "Slicer/Slicer Base/Python/slicer/ScriptedLoadableModule.py (resourcePath, setup, cleanup)"
    ),
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleLogic": (
        "Slicer/Slicer Base/Python/slicer/ScriptedLoadableModule.py (getParameterNode via GetSingletonNode)"
    ),
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleTest": (
        "Slicer/Slicer Base/Python/slicer/ScriptedLoadableModule.py (unittest.TestCase with delayDisplay)"
    ),
    # slicer.parameterNodeWrapper
    "slicer.parameterNodeWrapper.parameterNodeWrapper": (
        "Slicer/Slicer Base/Python/slicer/parameterNodeWrapper/wrapper.py (connectGui, disconnectGui, "
        "SlicerParameterName)"
    ),
    "slicer.parameterNodeWrapper.WithinRange": (
        "Slicer/Slicer Base/Python/slicer/parameterNodeWrapper/validators.py (QSpinBox connector: guiConnectors.py)"
    ),
    "slicer.parameterNodeWrapper.Choice": (
        "Slicer/Slicer Base/Python/slicer/parameterNodeWrapper/validators.py (QComboBoxToStringableConnector requires "
        "Choice: guiConnectors.py)"
    ),
    # MRML classes used as parameter types
    "slicer.vtkMRMLScalarVolumeNode": (
        "Slicer/Slicer Utilities/Templates/Modules/Scripted/TemplateKey.py (from slicer import "
        "vtkMRMLScalarVolumeNode); qMRMLNodeComboBoxToNodeConnector in parameterNodeWrapper/guiConnectors.py"
    ),
    "slicer.vtkMRMLSegmentationNode": (
        "Slicer/Slicer Base/Python/slicer/util.py (slicer.vtkMRMLSegmentationNode in arrayFromSegmentBinaryLabelmap)"
    ),
    # slicer.util
    "slicer.util.VTKObservationMixin": SLICER_UTIL_NOTE + (
        " (class VTKObservationMixin: addObserver/removeObserver/removeObservers)"
    ),
    "slicer.util.loadUI": SLICER_UTIL_NOTE,
    "slicer.util.childWidgetVariables": SLICER_UTIL_NOTE,
    "slicer.util.tryWithErrorDisplay": SLICER_UTIL_NOTE + " (contextmanager: message, show, waitCursor; re-raises)",
    "slicer.util.confirmOkCancelDisplay": SLICER_UTIL_NOTE + " (returns True in testing mode)",
    "slicer.util.pip_install": SLICER_UTIL_NOTE + (
        " (list of arguments; wraps slicer.packaging.pip_install: Base/Python/slicer/packaging/installer.py)"
    ),
    "slicer.util.startupEnvironment": SLICER_UTIL_NOTE,
    "slicer.util.exportNode": SLICER_UTIL_NOTE + " (does not modify the node's storage node, unlike saveNode)",
    "slicer.util.arrayFromVolume": SLICER_UTIL_NOTE,
    "slicer.util.arrayFromVolumeModified": SLICER_UTIL_NOTE,
    "slicer.util.arrayFromSegmentBinaryLabelmap": SLICER_UTIL_NOTE + (
        " (segmentationNode, segmentId, referenceVolumeNode; uses ExportSegmentsToLabelmapNode)"
    ),
    "slicer.util.updateSegmentBinaryLabelmapFromArray": SLICER_UTIL_NOTE + (
        " (narray, segmentationNode, segmentId, referenceVolumeNode; uses ImportLabelmapToSegmentationNode)"
    ),
    "slicer.util.loadSegmentation": SLICER_UTIL_NOTE + (
        " (def loadSegmentation(filename, returnNode=False): returns the loaded node; returnNode is deprecated)"
    ),
    "slicer.util.getModuleWidget().editor": SLICER_UTIL_NOTE + (
        " (getModuleWidget) + Slicer/Slicer Modules/Scripted/SegmentEditor/SegmentEditor.py "
        "(SegmentEditorWidget.editor = qMRMLSegmentEditorWidget)"
    ),
    "slicer.util.mainWindow": SLICER_UTIL_NOTE,
    "slicer.util.NodeModify": SLICER_UTIL_NOTE + " (context manager: StartModify/EndModify)",
    # slicer.app / slicer.mrmlScene
    "slicer.app.layoutManager": SLICER_UTIL_NOTE + (
        " (slicer.app.layoutManager().sliceWidget(name).mrmlSliceNode() in setSliceViewerLayers)"
    ),
    "slicer.app.processEvents": SLICER_UTIL_NOTE + " (delayDisplay, logProcessOutput)",
    "slicer.app.temporaryPath": SLICER_UTIL_NOTE + " (tempDirectory)",
    "slicer.mrmlScene": SLICER_UTIL_NOTE + " (getNodes: GetNumberOfNodes, GetNthNode)",
    "slicer.mrmlScene.AddNewNodeByClass": SLICER_UTIL_NOTE + " (addVolumeFromArray, arrayFromSegmentBinaryLabelmap)",
    "slicer.mrmlScene.RemoveNode": SLICER_UTIL_NOTE + " (arrayFromSegmentBinaryLabelmap)",
    "slicer.mrmlScene.GetNodeByID": SLICER_UTIL_NOTE + " (setSliceViewerLayers)",
    "slicer.mrmlScene.GetFirstNodeByClass": (
        "Slicer/Slicer Utilities/Templates/Modules/Scripted/TemplateKey.py (initializeParameterNode)"
    ),
    "slicer.mrmlScene.GetSingletonNode": (
        "Slicer/Slicer Modules/Scripted/SegmentEditor/SegmentEditor.py (singleton tag 'SegmentEditor', "
        "vtkMRMLSegmentEditorNode)"
    ),
    "slicer.mrmlScene.StartCloseEvent": (
        "Slicer/Slicer Utilities/Templates/Modules/Scripted/TemplateKey.py (addObserver on scene close)"
    ),
    "slicer.mrmlScene.EndCloseEvent": "Slicer/Slicer Utilities/Templates/Modules/Scripted/TemplateKey.py",
    "slicer.mrmlScene.Clear": (
        "Slicer/Slicer Utilities/Templates/Modules/Scripted/TemplateKey.py (TemplateKeyTest.setUp)"
    ),
    # qt (PythonQt)
    "qt.QTimer": (
        "lassoan/SlicerMONAIAuto3DSeg MONAIAuto3DSeg/MONAIAuto3DSeg.py (qt.QTimer); Slicer util.py "
        "_startAsyncProcessHandling"
    ),
    "qt.QTimer.singleShot": SLICER_UTIL_NOTE + " (_startAsyncProcessHandling, delayDisplay); MONAIAuto3DSeg.py",
    "qt.QFileDialog.getOpenFileName": (
        "Slicer/Slicer Modules/Scripted/ExtensionWizard/ExtensionWizard.py (static qt.QFileDialog.getExistingDirectory "
        "returns a str in PythonQt); Qt QFileDialog::getOpenFileName"
    ),
    "qt.Qt.ToolTipRole": (
        "QComboBox.setItemData(index, text, qt.Qt.ToolTipRole) in a Slicer segment editor effect (code search); "
        "Qt::ToolTipRole"
    ),
    "qt.Qt.DecorationRole": (
        "Qt::DecorationRole (item icon or QColor swatch); qMRMLSegmentsModel uses Qt::DecorationRole for segment "
        "colours (Slicer/Slicer Modules/Loadable/Segmentations/Widgets)"
    ),
    "qt.QColor": (
        "PythonQt QtGui QColor(r, g, b) (Slicer scripted modules, e.g. qt.QColor in Slicer/Slicer "
        "Modules/Scripted/SegmentEditor effects)"
    ),
    "qt.QListWidgetItem": (
        "PythonQt QtGui QListWidgetItem (setText, setData(qt.Qt.UserRole, ...) in Slicer scripted-module code found by "
        "code search); QListWidget.addItem(QListWidgetItem*)"
    ),
    "qt.QTableWidgetItem": (
        "PythonQt QtGui QTableWidgetItem(text) with setToolTip, QTableWidget.setItem(row, column, item) (Slicer "
        "scripted-module code found by code search)"
    ),
    # vtk
    "vtk.vtkCommand.ModifiedEvent": (
        "Slicer/Slicer Utilities/Templates/Modules/Scripted/TemplateKey.py (parameter node observer); "
        "parameterNodeWrapper/wrapper.py"
    ),
    "vtk.vtkMatrix4x4": SLICER_UTIL_NOTE + (
        " (arrayFromTransformMatrix: vtkMatrix4x4; GetIJKToRASMatrix in itkImageFromVolume)"
    ),
    "vtk.reference": (
        "VTK 9 Python output-argument wrapper: segment.GetTag(tagName, vtk.reference('')) in SlicerHeart and other "
        "Slicer extensions (code search); vtk.mutable is its deprecated name"
    ),
    # The Segment Editor effect and its registration
    "SegmentEditorEffects.AbstractScriptedSegmentEditorEffect": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorEffect.py (class AbstractScriptedSegmentEditorEffect: __init__(scriptedEffect), "
        "register(), cleanup())"
    ),
    "slicer.app.connect": (
        "lassoan/SlicerSegmentEditorExtraEffects SegmentEditorLocalThreshold/SegmentEditorLocalThreshold.py "
        "(slicer.app.connect(\"startupCompleted()\", self.registerEditorEffect))"
    ),
    "qSlicerSegmentationsEditorEffectsPythonQt.qSlicerSegmentEditorScriptedEffect": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorEffect.py docstring (effects.qSlicerSegmentEditorScriptedEffect(None); "
        "setPythonSource; self().register()); SegmentEditorFillBetweenSlicesEffect.py clone()"
    ),
    "vtkSegmentationCorePython.vtkSegmentation.SegmentModified": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (observeSegmentation)"
    ),
    "vtkSegmentationCorePython.vtkSegmentation.SourceRepresentationModified": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (observeSegmentation)"
    ),
    "slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (onApply: modifySegmentByLabelmap(..., "
        "ModificationModeSet))"
    ),
    "slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeAdd": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/qSlicerSegmentEditorAbstractLabelEffect / Paint "
        "effect (ModificationModeAdd); scripted effects call modifySelectedSegmentByLabelmap(..., ModificationModeAdd)"
    ),
    "slicer.vtkOrientedImageData": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (previewSegmentLabelmap = slicer.vtkOrientedImageData())"
    ),
    "slicer.util.mainWindow().cursor": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (createCursor returns slicer.util.mainWindow().cursor)"
    ),
    "slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (GetMaskMode() != "
        "slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere)"
    ),
    "slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments": (
        "Slicer/Slicer Libs/MRML/Core/vtkMRMLSegmentationNode.h (enum: EditAllowedOutsideAllSegments); "
        "qMRMLSegmentEditorWidget.cxx mask mode combo"
    ),
    # Qt widgets built by the effect (PythonQt QtGui; the same calls as Slicer's own effects)
    "qt.QPushButton": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (qt.QPushButton(text), objectName, setToolTip)"
    ),
    "qt.QCheckBox": (
        "Slicer/Slicer Modules/Scripted/ScreenCapture/ScreenCapture.py (qt.QCheckBox(text), checked, setToolTip; "
        "a qt.QHBoxLayout row of a ctkCollapsibleButton's QFormLayout via addRow)"
    ),
    "qt.QHBoxLayout": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (qt.QHBoxLayout, addWidget; addOptionsWidget(layout))"
    ),
    "qt.QLabel": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (qt.QLabel(text))"
    ),
    "qt.QIcon": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "SegmentEditorFillBetweenSlicesEffect.py (icon(): qt.QIcon(iconPath) or qt.QIcon())"
    ),
    "qt.QComboBox": (
        "PythonQt QtGui QComboBox (addItem(text, data), findData, itemData, currentIndex): Slicer effects such as "
        "SegmentEditorLogicalEffect build combo boxes with qt.QComboBox()"
    ),
    "qt.QDoubleSpinBox": (
        "PythonQt QtGui QDoubleSpinBox (setRange, setSingleStep, value, valueChanged(double)); Qt QDoubleSpinBox"
    ),
    "qt.QListWidget": "PythonQt QtGui QListWidget (addItem(text), clear, currentRowChanged(int)); Qt QListWidget",
    "qt.QProgressBar": "PythonQt QtGui QProgressBar (setRange, value); Qt QProgressBar",
    "qt.QMenu": (
        "PythonQt QtGui QMenu(parent), addAction(text) -> QAction with triggered(); qt.QMenu(..., button) in Slicer "
        "scripted code found by code search; QPushButton.setMenu(QMenu*)"
    ),
    # Self-test
    "slicer.util.selectModule": SLICER_UTIL_NOTE + " (def selectModule(module): sets the current module)",
    "slicer.util.addVolumeFromArray": SLICER_UTIL_NOTE + (
        " (def addVolumeFromArray(narray, ijkToRAS=None, name=None, nodeClassName=None))"
    ),
    "slicer.util.confirmYesNoDisplay": SLICER_UTIL_NOTE + (
        " (def confirmYesNoDisplay(text, windowTitle=None, parent=None, **kwargs) -> bool)"
    ),
    # Slicer modules imported by name
    "SampleData.downloadSample": (
        "Slicer/Slicer Modules/Scripted/SampleData/SampleData.py (def downloadSample(sampleName))"
    ),
    "PyTorchUtils.PyTorchUtilsLogic": "fepegar/SlicerPyTorch PyTorchUtils/PyTorchUtils.py",
}

#: Methods called on objects the chains above return (not checkable by the AST rule), with their
#: source. test_confirmed_object_methods_are_used keeps this list from going stale.
CONFIRMED_OBJECT_METHODS = {
    "torchInstalled": "fepegar/SlicerPyTorch PyTorchUtils/PyTorchUtils.py (@staticmethod torchInstalled)",
    "installTorch": (
        "fepegar/SlicerPyTorch PyTorchUtils/PyTorchUtils.py (installTorch(askConfirmation, forceComputationBackend, "
        "torchVersionRequirement, torchvisionVersionRequirement) -> torch or None)"
    ),
    "saveStateForUndo": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h (public slot)",
    "setSegmentationNode": (
        "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h (Q_INVOKABLE slot)"
    ),
    "segmentationNode": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h (Q_INVOKABLE)",
    "GetSourceVolumeNode": (
        "Slicer/Slicer Modules/Loadable/Segmentations/MRML/vtkMRMLSegmentEditorNode.h (GetMasterVolumeNode: deprecated "
        "alias)"
    ),
    "GetSegmentationNode": "Slicer/Slicer Modules/Loadable/Segmentations/MRML/vtkMRMLSegmentEditorNode.h",
    "GetSelectedSegmentID": (
        "Slicer/Slicer Modules/Loadable/Segmentations/MRML/vtkMRMLSegmentEditorNode.h (vtkGetStringMacro)"
    ),
    "currentSegmentID": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentSelectorWidget.h",
    "setCurrentSegmentID": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentSelectorWidget.h",
    "setCurrentNode": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentSelectorWidget.h",
    "JumpSliceByOffsetting": (
        "Slicer/Slicer Libs/MRML/Core/vtkMRMLSliceNode.h (JumpSliceByOffsetting(double r, double a, double s))"
    ),
    "GetSingletonTag": (
        "Slicer/Slicer Base/Python/slicer/ScriptedLoadableModule.py (SetSingletonTag on parameter nodes); vtkMRMLNode"
    ),
    "onReload": (
        "Slicer/Slicer Base/Python/slicer/ScriptedLoadableModule.py (ScriptedLoadableModuleWidget.onReload -> "
        "slicer.util.reloadScriptedModule)"
    ),
    "checkedNodes": (
        "Slicer/Slicer Libs/MRML/Widgets/qMRMLCheckableNodeComboBox.h (Q_INVOKABLE QList<vtkMRMLNode*> checkedNodes() "
        "const)"
    ),
    "checkedNodesChanged()": (
        "Slicer/Slicer Libs/MRML/Widgets/qMRMLCheckableNodeComboBox.h (signal checkedNodesChanged())"
    ),
    "currentPath": "commontk/CTK Libs/Widgets/ctkPathLineEdit.h (Q_PROPERTY QString currentPath)",
    "currentPathChanged(QString)": (
        "commontk/CTK Libs/Widgets/ctkPathLineEdit.h (signal currentPathChanged(const QString&))"
    ),
    "addCurrentPathToHistory": "commontk/CTK Libs/Widgets/ctkPathLineEdit.h (public slot)",
    "GetSegmentIdBySegmentName": (
        "Slicer/Slicer Libs/vtkSegmentationCore/vtkSegmentation.h (std::string GetSegmentIdBySegmentName(std::string "
        "name), case-insensitive)"
    ),
    "AddEmptySegment": (
        "Slicer/Slicer Libs/vtkSegmentationCore/vtkSegmentation.h (AddEmptySegment(segmentId, segmentName, color) -> "
        "segment ID)"
    ),
    "GetTerminologyEntryTagName": (
        "Slicer/Slicer Libs/vtkSegmentationCore/vtkSegment.h (static: \"TerminologyEntry\"); "
        "segment.SetTag(segment.GetTerminologyEntryTagName(), ...) in SlicerTotalSegmentator"
    ),
    "SetTag": "Slicer/Slicer Libs/vtkSegmentationCore/vtkSegment.h (SetTag(std::string tag, std::string value))",
    "GetTag": "Slicer/Slicer Libs/vtkSegmentationCore/vtkSegment.h (bool GetTag(std::string tag, std::string& value))",
    "setHorizontalHeaderLabels": "Qt QTableWidget::setHorizontalHeaderLabels(const QStringList&)",
    "undo": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h (public slot undo())",
    "effectByName": (
        "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h (Q_INVOKABLE "
        "qSlicerSegmentEditorAbstractEffect* effectByName(QString name))"
    ),
    "modifySegmentByLabelmap": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/qSlicerSegmentEditorAbstractEffect.h "
        "(Q_INVOKABLE modifySegmentByLabelmap(segmentationNode, segmentID, modifierLabelmap, modificationMode, "
        "bypassMasking=false): applies the editor's mask and overwrite mode)"
    ),
    "parameterSetNode": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/qSlicerSegmentEditorAbstractEffect.h (Q_INVOKABLE "
        "vtkMRMLSegmentEditorNode* parameterSetNode())"
    ),
    "GetBinaryLabelmapRepresentation": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (previewNode.GetBinaryLabelmapRepresentation(segmentID, "
        "labelmap))"
    ),
    "IsEmpty": "Slicer/Slicer Libs/vtkSegmentationCore/vtkOrientedImageData.cxx (bool vtkOrientedImageData::IsEmpty())",
    "SetSegmentOpacity2DFill": (
        "Slicer/Slicer Modules/Loadable/Segmentations/MRML/vtkMRMLSegmentationDisplayNode.h "
        "(SetSegmentOpacity2DFill(std::string segmentID, double opacity))"
    ),
    "SetSegmentOpacity2DOutline": (
        "Slicer/Slicer Modules/Loadable/Segmentations/MRML/vtkMRMLSegmentationDisplayNode.h "
        "(SetSegmentOpacity2DOutline(segmentID, opacity))"
    ),
    "addLabeledOptionsWidget": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (scriptedEffect.addLabeledOptionsWidget(label, widget))"
    ),
    "addOptionsWidget": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (scriptedEffect.addOptionsWidget(layout or widget))"
    ),
    "setParameterDefault": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (setMRMLDefaults)"
    ),
    "doubleParameter": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorEffect.py docstring (parameter, integerParameter, doubleParameter, setParameter)"
    ),
    "setPythonSource": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "SegmentEditorFillBetweenSlicesEffect.py (clone: setPythonSource(__file__))"
    ),
    "setupOptionsFrame": (
        "Slicer/Slicer Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/"
        "AbstractScriptedSegmentEditorAutoCompleteEffect.py (overridden effect methods: setupOptionsFrame, "
        "createCursor, setMRMLDefaults, updateGUIFromMRML, updateMRMLFromGUI)"
    ),
    "SetMaskMode": (
        "Slicer/Slicer Modules/Loadable/Segmentations/MRML/vtkMRMLSegmentEditorNode.h (SetMaskMode(int)); "
        "mrmlSegmentEditorNode().SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments) in scripts"
    ),
    "mrmlSegmentEditorNode": (
        "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h (Q_INVOKABLE "
        "vtkMRMLSegmentEditorNode* mrmlSegmentEditorNode())"
    ),
    "setSourceVolumeNode": (
        "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h "
        "(setSourceVolumeNode(vtkMRMLNode*), Slicer 5.2+)"
    ),
    "setMenu": "Qt QPushButton::setMenu(QMenu*): the button shows the menu",
}

#: slicer.util functions that open dialogs: the Logic must never call them (STYLE.md).
DIALOG_FUNCTIONS = {
    "confirmOkCancelDisplay", "confirmYesNoDisplay", "confirmRetryCloseDisplay", "errorDisplay",
    "warningDisplay", "infoDisplay", "messageBox", "delayDisplay", "tryWithErrorDisplay",
}
#: Widget methods named on* that are not user-action handlers (scene and segmentation observers).
NON_HANDLERS = {"onSceneStartClose", "onSceneEndClose", "onSegmentationModified"}

ROOT_NAMES = {"slicer", "qt", "ctk", "vtk", "SampleData", "PyTorchUtils", "SegmentEditorEffects",
              "qSlicerSegmentationsEditorEffectsPythonQt", "vtkSegmentationCorePython"}


# Helpers -----------------------------------------------------------------------------------


def module_files() -> list[Path]:
    """SAMFewShot.py, every file of its SAMFewShotSlicerLib package and the Propagate effect."""
    return [MODULE_FILE] + sorted(PACKAGE_DIR.glob("*.py")) + [EFFECT_FILE]


def parse_file(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def module_tree() -> ast.Module:
    return parse_file(MODULE_FILE)


def all_trees() -> dict[Path, ast.Module]:
    return {path: parse_file(path) for path in module_files()}


def module_class(name: str) -> ast.ClassDef:
    for node in module_tree().body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise AssertionError(f"SAMFewShot.py has no class {name}")


def module_constant(name: str):
    for node in module_tree().body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"SAMFewShot.py has no constant {name}")


def package_constant(file_name: str, name: str):
    for node in parse_file(PACKAGE_DIR / file_name).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{file_name} has no constant {name}")


def package_classes() -> dict[str, ast.ClassDef]:
    """Every top-level class of the SAMFewShotSlicerLib files, by name."""
    classes = {}
    for path in module_files()[1:-1]:
        for node in parse_file(path).body:
            if isinstance(node, ast.ClassDef):
                assert node.name not in classes, f"two classes named {node.name}"
                classes[node.name] = node
    return classes


def is_gui_class(name: str) -> bool:
    """Panels, the job monitor and the effect drive widgets; every other class of the module is logic."""
    return name.endswith("Panel") or name in ("JobMonitor", "SAMFewShotWidget", "SegmentEditorEffect")


def effect_class() -> ast.ClassDef:
    return next(
        n for n in parse_file(EFFECT_FILE).body if isinstance(n, ast.ClassDef) and n.name == "SegmentEditorEffect"
    )


def logic_classes() -> list[ast.ClassDef]:
    """SAMFewShotLogic and every logic class and mixin of the package."""
    return [module_class("SAMFewShotLogic")] + [c for n, c in package_classes().items() if not is_gui_class(n)]


def gui_classes() -> list[ast.ClassDef]:
    return (
        [module_class("SAMFewShotWidget")]
        + [c for n, c in package_classes().items() if is_gui_class(n)]
        + [effect_class()]
    )


def _chain(node: ast.AST, aliases: dict | None = None) -> str | None:
    """Dotted text of an attribute chain rooted at one of ROOT_NAMES (or an ``import X as Y``
    alias of one); calls are written ``()``."""
    aliases = aliases or {}
    if isinstance(node, ast.Name):
        name = aliases.get(node.id, node.id)
        return name if name in ROOT_NAMES else None
    if isinstance(node, ast.Attribute):
        base = _chain(node.value, aliases)
        return None if base is None else f"{base}.{node.attr}"
    if isinstance(node, ast.Call):
        base = _chain(node.func, aliases)
        return None if base is None else f"{base}()"
    return None


def api_chains(tree: ast.AST) -> set[str]:
    """Every maximal slicer/qt/ctk/vtk/... attribute chain and every name imported from them."""
    aliases = {a.asname: a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names if a.asname}
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parent = parents.get(node)
            if isinstance(parent, ast.Attribute) and parent.value is node:
                continue  # part of a longer chain
            if isinstance(parent, ast.Call) and parent.func is node:
                grandparent = parents.get(parent)
                if isinstance(grandparent, ast.Attribute) and grandparent.value is parent:
                    continue  # x.f().y: the longer chain is recorded
            text = _chain(node, aliases)
            if text:
                chains.add(text)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ROOT_NAMES:
            for alias in node.names:
                chains.add(f"{node.module}.{alias.name}")
    return chains


def ui_widgets() -> dict[str, str]:
    """objectName -> class of every widget (and layout) in the .ui file."""
    root = ET.parse(UI_FILE).getroot()
    names = {}
    for element in root.iter():
        if element.tag in ("widget", "layout") and element.get("name"):
            names[element.get("name")] = element.get("class")
    return names


def cmake_set(text: str, variable: str) -> list[str]:
    """Items of ``set(VARIABLE item item ...)`` in a CMake file (comments removed)."""
    text = re.sub(r"#[^\n]*", "", text)
    match = re.search(rf"set\(\s*{variable}\s+(.*?)\)", text, re.S)
    assert match, f"set({variable} ...) not found"
    return match.group(1).split()


def lib_files() -> list[Path]:
    """Every file of SAMFewShotLib (what CMake must install), without Python caches."""
    return sorted(
        path for path in LIB_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    )


# The module files --------------------------------------------------------------------------


@pytest.mark.parametrize("path", module_files(), ids=lambda p: p.name)
def test_module_files_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "compiled.pyc"), doraise=True)


def test_no_star_import():
    for path, tree in all_trees().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert all(alias.name != "*" for alias in node.names), f"{path.name}: star import from {node.module}"


def test_module_files_stay_small():
    """STYLE.md: SAMFewShot.py reads like the template (about 450 lines or fewer); the package
    files hold one concept each."""
    assert len(MODULE_FILE.read_text().splitlines()) <= 450
    for path in module_files()[1:]:
        # the effect is one class with its options frame, as Slicer's own effect files are
        assert len(path.read_text()) < (18_000 if path == EFFECT_FILE else 14_000), path.name
        assert ast.get_docstring(parse_file(path)), f"{path.name} has no module docstring"
    assert sorted(p.name for p in MODULE_DIR.glob("*.py")) == ["SAMFewShot.py"], (
        "Slicer loads every .py file beside SAMFewShot.py as a module: helpers go into SAMFewShotSlicerLib/"
    )


def test_template_shape():
    """Module, ParameterNode, Widget, Logic, Test as in Slicer's scripted-module template."""
    expected = {
        "SAMFewShot": {"ScriptedLoadableModule"},
        "SAMFewShotWidget": {"ScriptedLoadableModuleWidget", "VTKObservationMixin"},
        "SAMFewShotTest": {"ScriptedLoadableModuleTest"},
    }
    for name, bases in expected.items():
        node = module_class(name)
        assert {base.id for base in node.bases if isinstance(base, ast.Name)} == bases, name
    logic = module_class("SAMFewShotLogic")
    assert [base.id for base in logic.bases if isinstance(base, ast.Name)] == ["ScriptedLoadableModuleLogic"]
    init = next(f for f in logic.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    parts = _constructed_parts(init)
    assert parts == {
        "jobs": "ChildJobs",
        "scene": "SceneExchange",
        "packages": "PythonPackages",
        "propagation": "PropagationLogic",
        "weights": "WeightsLogic",
        "atlas": "AtlasLogic",
        "batch": "BatchLogic",
    }, "logic by composition"
    assert set(parts.values()) <= set(package_classes())
    assert not [c for c in package_classes() if c.endswith("Mixin")], "no mixins left"
    parameterNode = module_class("SAMFewShotParameterNode")
    assert any(isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in parameterNode.decorator_list)
    test = module_class("SAMFewShotTest")
    tests = {f.name for f in test.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")}
    assert {
        "test_EffectIsRegistered",
        "test_InterpolateAndRegisterOnSyntheticBall",
        "test_PreviewApplyWithMaskingAndUndo",
    } <= tests
    run_test = next(f for f in test.body if isinstance(f, ast.FunctionDef) and f.name == "runTest")
    called = {n.func.attr for n in ast.walk(run_test) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert tests <= called, f"runTest does not run {tests - called}"


def test_logic_never_touches_widgets_or_dialogs():
    checked = logic_classes()
    assert {"SAMFewShotLogic", "AtlasLogic", "BatchLogic", "ChildJobs", "SceneExchange",
            "PropagationLogic", "WeightsLogic", "PythonPackages"} <= {c.name for c in checked}
    raised = set()
    for logic in checked:
        for node in ast.walk(logic):
            if isinstance(node, ast.Attribute) and node.attr == "ui":
                raise AssertionError(f"{logic.name} uses self.ui (line {node.lineno})")
            if isinstance(node, ast.Attribute) and node.attr in DIALOG_FUNCTIONS:
                raise AssertionError(f"{logic.name} calls {node.attr} (line {node.lineno})")
            if isinstance(node, ast.Name) and node.id == "qt":
                raise AssertionError(f"{logic.name} uses qt (line {node.lineno}): widgets and timers belong to the GUI")
        raised |= {
            n.exc.func.id
            for n in ast.walk(logic)
            if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call) and isinstance(n.exc.func, ast.Name)
        }
    assert "ValueError" in raised


def test_widget_handlers_are_wrapped_in_try_with_error_display():
    handlers = []
    for gui in gui_classes():
        for method in gui.body:
            if (
                not (isinstance(method, ast.FunctionDef) and method.name.startswith("on"))
                or method.name in NON_HANDLERS
            ):
                continue
            handlers.append(f"{gui.name}.{method.name}")
            wrapped = any(
                isinstance(node, ast.With)
                and any(
                    _chain(item.context_expr.func) == "slicer.util.tryWithErrorDisplay"
                    for item in node.items
                    if isinstance(item.context_expr, ast.Call)
                )
                for node in ast.walk(method)
            )
            assert wrapped, f"{gui.name}.{method.name} is not wrapped in slicer.util.tryWithErrorDisplay"
    assert {"AtlasPanel.onApply", "BatchPanel.onRun", "WeightsPanel.onImportModel", "JobMonitor.onTimeout"} <= set(
        handlers
    )


def test_module_calls_only_checked_slicer_apis():
    used = set()
    for tree in all_trees().values():
        used |= api_chains(tree)
    unchecked = sorted(used - set(CHECKED_APIS))
    assert not unchecked, f"the module uses Slicer/Qt/VTK API not confirmed in CHECKED_APIS: {unchecked}"
    stale = sorted(set(CHECKED_APIS) - used)
    assert not stale, f"CHECKED_APIS lists API the module no longer uses: {stale}"
    assert all(source.strip() for source in CHECKED_APIS.values())


def test_confirmed_object_methods_are_used():
    called = set()
    for tree in all_trees().values():
        called |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        called |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}  # overridden base methods
        called |= {
            n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }  # signals, getattr
    assert not sorted(set(CONFIRMED_OBJECT_METHODS) - called)


def test_api_chain_extraction():
    tree = ast.parse(
        "import slicer\nfrom slicer.util import VTKObservationMixin\n"
        "slicer.util.getModuleWidget('SegmentEditor').editor.undo()\n"
        "x = slicer.mrmlScene\nqt.QTimer.singleShot(0, f)\nself.ui.button.enabled = True\n"
    )
    assert api_chains(tree) == {
        "slicer.util.VTKObservationMixin",
        "slicer.util.getModuleWidget().editor.undo",
        "slicer.mrmlScene",
        "qt.QTimer.singleShot",
    }


# The .ui file ------------------------------------------------------------------------------

#: Widgets bound to the parameter node by connectGui (SlicerParameterName), with the widget class
#: whose parameterNodeWrapper connector takes the field's type (guiConnectors.py).
BOUND_WIDGETS = {
    "inputVolume": "qMRMLNodeComboBox", "axis": "QComboBox", "suggestCount": "QSpinBox",
    "atlasFusion": "QComboBox", "atlasRefine": "QCheckBox", "atlasSegmentation": "qMRMLNodeComboBox",
    "batchInputs": "QComboBox", "batchModelKind": "QComboBox", "batchScheduler": "QLineEdit",
}


def ui_used_names() -> set[str]:
    """Every ``self.ui.<name>`` of the module's files."""
    return {
        node.attr
        for tree in all_trees().values()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"
    }


def test_ui_parses_and_has_every_widget_the_module_uses():
    widgets = ui_widgets()
    root = ET.parse(UI_FILE).getroot()
    assert root.find("widget").get("class") == "qMRMLWidget" and root.find("widget").get("name") == "SAMFewShot"
    used = ui_used_names()
    assert {"atlasApplyButton", "atlasLabelsList", "batchTable", "batchVolumesSelector", "metaInitPathLineEdit"} <= used
    missing = sorted(used - set(widgets))
    assert not missing, f"self.ui.<name> not in SAMFewShot.ui: {missing}"


def test_ui_names_are_unique():
    root = ET.parse(UI_FILE).getroot()
    names = [e.get("name") for e in root.iter() if e.tag in ("widget", "layout", "spacer") and e.get("name")]
    assert len(names) == len(set(names))


def test_ui_form_layout_cells_are_used_once():
    """Every QFormLayout row holds a label + field pair or one spanning item, never two items in
    one cell (Qt Designer would drop one of them)."""
    root = ET.parse(UI_FILE).getroot()
    layouts = [layout for layout in root.iter("layout") if layout.get("class") == "QFormLayout"]
    assert len(layouts) >= 5
    for layout in layouts:
        cells = set()
        for item in layout.findall("item"):
            row, column, span = int(item.get("row")), int(item.get("column")), int(item.get("colspan", "1"))
            for c in range(column, column + span):
                assert (row, c) not in cells, f"{layout.get('name')}: cell ({row}, {c}) used twice"
                cells.add((row, c))
        rows = sorted({row for row, _ in cells})
        assert rows == list(range(len(rows))), f"{layout.get('name')}: rows {rows} have gaps"


def test_ui_parameter_names_are_parameter_node_fields():
    fields = {
        node.target.id: ast.unparse(node.annotation) for node in module_class("SAMFewShotParameterNode").body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    root = ET.parse(UI_FILE).getroot()
    bound = {}
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", "SlicerParameterName must be a dynamic property (stdset=0)"
                bound[prop.find("string").text] = widget.get("class")
    assert bound == BOUND_WIDGETS
    assert set(bound) <= set(fields)
    for name, widget_class in bound.items():  # QComboBox needs a Choice; QCheckBox a bool; QLineEdit a str
        if widget_class == "QComboBox":
            assert "Choice(" in fields[name], name
        elif widget_class in ("QCheckBox", "QLineEdit", "QSpinBox"):
            assert {"QCheckBox": "bool", "QLineEdit": "str", "QSpinBox": "int"}[widget_class] in fields[name], name
        else:
            assert fields[name].startswith("vtkMRML"), name


def test_ui_custom_widgets_are_declared_and_scene_is_connected():
    root = ET.parse(UI_FILE).getroot()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {e.get("class") for e in root.iter("widget")}
    assert {c for c in used if not c.startswith("Q")} <= declared
    assert {"ctkPathLineEdit", "qMRMLCheckableNodeComboBox"} <= used
    receivers = {
        c.findtext("receiver") for c in root.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    mrml = {name for name, cls in ui_widgets().items() if cls.startswith("qMRML") and cls != "qMRMLWidget"}
    assert mrml and mrml <= receivers


def test_ui_atlas_and_batch_sections_are_working_panels():
    """No placeholder text is left; every button of the sections is used by the module."""
    text = UI_FILE.read_text()
    for placeholder in ("Not implemented", "available with the", "NoteLabel"):
        assert placeholder not in text
    widgets = ui_widgets()
    buttons = {name for name, cls in widgets.items() if cls == "QPushButton" and name.startswith(("atlas", "batch"))}
    assert len(buttons) >= 7 and buttons <= ui_used_names()


# CMake -------------------------------------------------------------------------------------


def test_extension_cmake_metadata():
    text = EXTENSION_CMAKE.read_text()
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                     "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf"set\({variable}\s+\"[^\"]+\"\)", text), variable
    assert re.search(r'set\(EXTENSION_DEPENDS\s+"PyTorch"\)', text)
    assert "add_subdirectory(SAMFewShot)" in text
    assert "${Slicer_EXTENSION_GENERATE_CONFIG}" in text and "${Slicer_EXTENSION_CPACK}" in text
    icon = re.search(r'set\(EXTENSION_ICONURL\s+"\$\{SAMFEWSHOT_RAW_URL\}/([^"]+)"\)', text)
    assert icon and (ROOT / icon.group(1)).is_file(), "the extension icon URL must point at a file of the repository"


def test_module_cmake_lists_every_module_file():
    text = MODULE_CMAKE.read_text()
    assert cmake_set(text, "MODULE_NAME") == ["SAMFewShot"]
    scripts = [s.replace("${MODULE_NAME}", "SAMFewShot") for s in cmake_set(text, "MODULE_PYTHON_SCRIPTS")]
    on_disk = [p.relative_to(MODULE_DIR).as_posix() for p in module_files()]
    assert sorted(s for s in scripts if not s.startswith("${")) == sorted(on_disk)
    resources = {s.replace("${MODULE_NAME}", "SAMFewShot") for s in cmake_set(text, "MODULE_PYTHON_RESOURCES")}
    resource_files = {
        p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()
    }
    assert resources == resource_files
    assert "slicerMacroBuildScriptedModule(" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    assert (MODULE_DIR / "Testing" / "CMakeLists.txt").read_text().strip() == "add_subdirectory(Python)"


def test_module_cmake_glob_covers_every_lib_file():
    """The recursive glob in SAMFewShot/CMakeLists.txt must match every file of SAMFewShotLib,
    subpackages included (atlas/, atlas/rrl/, batch/, fewshot/, meta/, ...)."""
    text = MODULE_CMAKE.read_text()
    assert 'GLOB_RECURSE SAMFEWSHOTLIB_SOURCES' in text
    assert '"${SAMFEWSHOTLIB_SOURCE_DIR}/*.py"' in text
    assert "${SAMFEWSHOTLIB_PYTHON_SCRIPTS}" in " ".join(cmake_set(text, "MODULE_PYTHON_SCRIPTS"))
    files = lib_files()
    assert files and any(len(p.relative_to(LIB_DIR).parts) >= 3 for p in files if p.suffix == ".py"), (
        "no nested subpackage?"
    )
    not_covered = [str(p.relative_to(ROOT)) for p in files if p.suffix != ".py"]
    assert not not_covered, f"SAMFewShotLib files the CMake glob does not install (add them): {not_covered}"
    packages = {p.parent for p in files}
    without_init = sorted(str(d.relative_to(ROOT)) for d in packages if not (d / "__init__.py").is_file())
    assert not without_init, f"folders of SAMFewShotLib without __init__.py (not importable in Slicer): {without_init}"
    if shutil.which("git"):
        tracked = subprocess.run(
            ["git", "ls-files", "SAMFewShotLib"], cwd=ROOT, capture_output=True, text=True
        ).stdout.split()
        assert all(name.endswith(".py") for name in tracked)


#: Stand-in for Slicer's CMake package: slicerMacroBuildScriptedModule checks that every script
#: exists (as Slicer's CMake/SlicerMacroBuildScriptedModule.cmake does) and records where each
#: script is copied, computed as CTK's CMake/ctkMacroCompilePythonScript.cmake does (relative path
#: P -> <scripted modules dir>/P; absolute path -> relative to CMAKE_CURRENT_BINARY_DIR).
STUB_USE_SLICER = r"""
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-stub/qt-scripted-modules")
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords: ${MY_SLICER_UNPARSED_ARGUMENTS}")
  endif()
  foreach(var SCRIPTS RESOURCES)
    foreach(value ${MY_SLICER_${var}})
      if(NOT IS_ABSOLUTE ${value})
        set(value_absolute ${CMAKE_CURRENT_SOURCE_DIR}/${value})
      else()
        set(value_absolute ${value})
      endif()
      if(NOT EXISTS ${value_absolute} AND NOT EXISTS ${value_absolute}.py)
        message(FATAL_ERROR "slicerMacroBuildScriptedModule(${var}) given nonexistent file '${value}'")
      endif()
    endforeach()
  endforeach()
  foreach(file ${MY_SLICER_SCRIPTS})
    get_filename_component(file_ext ${file} EXT)
    if(NOT "${file_ext}" MATCHES "py")
      set(file "${file}.py")
    endif()
    set(src "${CMAKE_CURRENT_SOURCE_DIR}/${file}")
    set(tgt_file ${file})
    if(IS_ABSOLUTE ${file})
      set(src ${file})
      file(RELATIVE_PATH tgt_file ${CMAKE_CURRENT_BINARY_DIR} ${file})
    endif()
    file(APPEND "${SAMFEWSHOT_STUB_OUTPUT}" "SCRIPT|${MY_SLICER_NAME}|${src}|${tgt_file}\n")
  endforeach()
  foreach(file ${MY_SLICER_RESOURCES})
    file(APPEND "${SAMFEWSHOT_STUB_OUTPUT}" "RESOURCE|${MY_SLICER_NAME}|${CMAKE_CURRENT_SOURCE_DIR}/${file}|${file}\n")
  endforeach()
endmacro()
macro(slicer_add_python_unittest)
  cmake_parse_arguments(MY_TEST "" "SCRIPT" "SLICER_ARGS" ${ARGN})
  file(APPEND "${SAMFEWSHOT_STUB_OUTPUT}" "UNITTEST|${MY_TEST_SCRIPT}\n")
endmacro()
foreach(variable EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_DESCRIPTION EXTENSION_ICONURL
                 EXTENSION_SCREENSHOTURLS EXTENSION_DEPENDS)
  file(APPEND "${SAMFEWSHOT_STUB_OUTPUT}" "META|${variable}|${${variable}}\n")
endforeach()
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_extension_configures_and_installs_every_lib_file(tmp_path):
    """Configure the real top-level CMakeLists.txt against a stand-in Slicer package and check
    where every script would be copied: SAMFewShot.py, SAMFewShotSlicerLib/* and SAMFewShotLib/**
    (subpackages included) next to each other."""
    slicer_dir = tmp_path / "FakeSlicer"
    slicer_dir.mkdir()
    (slicer_dir / "UseSlicer.cmake").write_text(STUB_USE_SLICER)
    (slicer_dir / "Empty.cmake").write_text("")
    (slicer_dir / "SlicerConfig.cmake").write_text(
        'set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")\n'
        'set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake")\n'
        'set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake")\n'
    )
    output = tmp_path / "stub_output.txt"
    build = tmp_path / "build"
    result = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), f"-DSlicer_DIR={slicer_dir}", f"-DSAMFEWSHOT_STUB_OUTPUT={output}",
         "-DBUILD_TESTING=ON"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    records = [line.split("|") for line in output.read_text().splitlines()]
    scripts = {r[3]: Path(r[2]) for r in records if r[0] == "SCRIPT"}
    module = {p.relative_to(MODULE_DIR).as_posix(): p for p in module_files()}
    lib = {f"SAMFewShotLib/{p.relative_to(LIB_DIR).as_posix()}": p for p in lib_files()}
    assert set(scripts) == set(module) | set(lib)
    assert any(target.count("/") >= 3 for target in lib), "no nested subpackage installed?"
    for target, source in scripts.items():
        assert source.read_bytes() == {**module, **lib}[target].read_bytes(), target
    resources = {r[3] for r in records if r[0] == "RESOURCE"}
    assert resources == {"Resources/Icons/SAMFewShot.png", "Resources/UI/SAMFewShot.ui"}
    assert ["UNITTEST", "SAMFewShot.py"] in records
    meta = {r[1]: r[2] for r in records if r[0] == "META"}
    assert meta["EXTENSION_DEPENDS"] == "PyTorch" and all(meta.values())


# slicer_support ----------------------------------------------------------------------------


def _support_imports(tree: ast.AST) -> tuple[dict, dict]:
    """(module alias -> module, function name -> function) imported from SAMFewShotLib.slicer_support."""
    import importlib

    modules, functions = {}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("SAMFewShotLib.slicer_support"):
            for alias in node.names:
                if node.module == "SAMFewShotLib.slicer_support":
                    modules[alias.asname or alias.name] = importlib.import_module(f"{node.module}.{alias.name}")
                else:
                    functions[alias.asname or alias.name] = getattr(importlib.import_module(node.module), alias.name)
    return modules, functions


def _binds(function, call: ast.Call) -> None:
    positional = [object()] * len(call.args)
    keywords = {k.arg: object() for k in call.keywords if k.arg}
    inspect.signature(function).bind(*positional, **keywords)


def test_module_calls_match_slicer_support_signatures():
    """Every call of a SAMFewShotLib.slicer_support function binds to its real signature, and every
    constant the module reads from it exists."""
    checked = 0
    for path, tree in all_trees().items():
        modules, functions = _support_imports(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in modules:
                target = getattr(modules[func.value.id], func.attr, None)
                assert target is not None, f"{path.name}: {func.value.id}.{func.attr} does not exist"
            elif isinstance(func, ast.Name) and func.id in functions:
                target = functions[func.id]
            else:
                continue
            if callable(target) and not isinstance(target, type):
                _binds(target, node)
                checked += 1
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                assert hasattr(modules[node.value.id], node.attr), (
                    f"{path.name}: {node.value.id}.{node.attr} does not exist"
                )
    assert checked >= 15


def test_module_uses_existing_process_runner_members():
    from SAMFewShotLib.slicer_support.process_runner import ProcessRunner
    from SAMFewShotLib.slicer_support.progress_lines import ProgressTracker

    runner_members, tracker_members = set(), set()
    for tree in all_trees().values():
        runner_members |= {
            n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and (
                (isinstance(n.value, ast.Name) and n.value.id == "runner")
                or (isinstance(n.value, ast.Attribute) and n.value.attr == "runner")
            )
        }
        tracker_members |= {
            n.attr
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "tracker"
        }
    instance_attributes = ("tracker", "stdout_lines", "stderr_lines")
    assert "take_stdout_lines" in runner_members
    assert all(hasattr(ProcessRunner, m) or m in instance_attributes for m in runner_members), runner_members
    assert tracker_members and all(hasattr(ProgressTracker, m) for m in tracker_members)


def test_engine_choices_are_known_to_the_commands():
    from SAMFewShotLib.slicer_support import commands

    engines = [engine for engine, _description in package_constant("engine_choices.py", "ENGINE_CHOICES")]
    assert engines[0] == "auto" and len(set(engines)) == len(engines)
    assert {"sam", "fewshot", "meta"} <= set(engines)
    for engine in engines:
        commands.engine_requirements(engine, torch_available=True, checkpoints_present=["sam_vit_b"])  # no ValueError
    for engine in commands.WEIGHTED_ENGINES:
        assert commands.engine_requirements(engine, torch_available=False, checkpoints_present=[]) is not None


def test_the_logic_installs_the_requirement_lists_of_slicer_support():
    """The package lists live in slicer_support.requirements (kept in sync with pyproject.toml by
    Testing/slicer_support/test_slicer_requirements.py); the module does not keep copies."""
    source = (PACKAGE_DIR / "python_packages.py").read_text()
    for name in ("PYTHON_REQUIREMENTS", "SAM_PYTHON_REQUIREMENTS", "DIST_PYTHON_REQUIREMENTS",
                 "SFR_PYTHON_REQUIREMENTS",
                 "TORCH_VERSION_REQUIREMENT", "TORCHVISION_VERSION_REQUIREMENT"):
        assert f"requirements.{name}" in source
    for path in module_files():
        assert '"itk-elastix' not in path.read_text(), f"{path.name} keeps its own copy of the requirements"


# The Propagate Segment Editor effect ----------------------------------------------------------


def test_effect_is_an_abstract_scripted_effect_with_the_editor_methods():
    effect = effect_class()
    assert [b.id for b in effect.bases if isinstance(b, ast.Name)] == ["AbstractScriptedSegmentEditorEffect"]
    methods = {f.name for f in effect.body if isinstance(f, ast.FunctionDef)}
    assert {"__init__", "clone", "icon", "helpText", "setupOptionsFrame", "createCursor", "setMRMLDefaults",
            "updateGUIFromMRML", "updateMRMLFromGUI", "cleanup", "onInitialize", "onApply", "onCancel",
            "onNextLowConfidence"} <= methods
    source = EFFECT_FILE.read_text()
    assert "scriptedEffect.name = editor_bridge.PROPAGATE_EFFECT_NAME" in source
    bridge = (PACKAGE_DIR / "editor_bridge.py").read_text()
    assert 'PROPAGATE_EFFECT_NAME = "Propagate"' in bridge


def test_effect_lives_where_slicer_does_not_load_it_as_a_module_and_is_registered_at_startup():
    assert EFFECT_FILE.parent != MODULE_DIR and EFFECT_FILE.is_file()
    module = module_tree()
    register = next(f for f in module.body if isinstance(f, ast.FunctionDef) and f.name == "registerPropagateEffect")
    calls = {n.func.attr for n in ast.walk(register) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert {"qSlicerSegmentEditorScriptedEffect", "setPythonSource", "register", "self"} <= calls
    init = next(f for f in module_class("SAMFewShot").body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    connects = [n for n in ast.walk(init) if isinstance(n, ast.Call) and _chain(n.func) == "slicer.app.connect"]
    assert (
        connects
        and connects[0].args[0].value == "startupCompleted()"
        and connects[0].args[1].id == "registerPropagateEffect"
    )
    path = next(n for n in module.body if isinstance(n, ast.Assign) and n.targets[0].id == "PROPAGATE_EFFECT_PATH")
    assert [a.value for a in path.value.args[1:]] == ["SegmentEditorPropagate", "SegmentEditorEffect.py"]


def test_effect_widgets_are_created_before_use():
    """Every self.<widget> the effect reads is created in __init__ or setupOptionsFrame."""
    effect = effect_class()
    created = set()
    for method in effect.body:
        if isinstance(method, ast.FunctionDef) and method.name in ("__init__", "setupOptionsFrame"):
            created |= {t.attr for n in ast.walk(method) if isinstance(n, ast.Assign) for t in n.targets
                        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    assigned_anywhere = {t.attr for n in ast.walk(effect) if isinstance(n, (ast.Assign, ast.AugAssign))
                         for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                         for t in (t.elts if isinstance(t, ast.Tuple) else [t])
                         if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    methods = {f.name for f in effect.body if isinstance(f, ast.FunctionDef)}
    used = {
        n.attr
        for n in ast.walk(effect)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
    }
    widgets = {u for u in used if u.endswith(("Button", "ComboBox", "SpinBox", "Label", "List", "Bar"))}
    assert widgets and widgets <= created, widgets - created
    inherited = {"scriptedEffect", "__class__"}
    assert used - methods - inherited <= assigned_anywhere, used - methods - inherited - assigned_anywhere


def test_effect_apply_is_one_undoable_masked_write():
    """Apply goes through editor_bridge.applyPreview with the effect's own scriptedEffect, which
    saves the undo state and calls modifySegmentByLabelmap (no bypassMasking)."""
    effect = effect_class()
    apply = next(f for f in effect.body if isinstance(f, ast.FunctionDef) and f.name == "onApply")
    call = next(
        n
        for n in ast.walk(apply)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "applyPreview"
    )
    assert {k.arg: ast.unparse(k.value) for k in call.keywords} == {"effect": "self.scriptedEffect"}
    bridge = (PACKAGE_DIR / "editor_bridge.py").read_text()
    assert (
        "effect.saveStateForUndo()" in bridge
        and "effect.modifySegmentByLabelmap(segmentationNode, segmentId, labelmap, mode)" in bridge
    )
    assert "bypassMasking" not in bridge.split('"""', 2)[2] and "setSegmentationNode" not in bridge


def test_module_accept_never_switches_the_editors_segmentation():
    for path in module_files()[1:]:
        assert "setSegmentationNode(" not in path.read_text(), f"{path.name} switches the Segment Editor's segmentation"


def test_job_monitor_refreshes_the_gui_only_when_a_job_starts_or_ends():
    """While a job runs, the timer touches only the progress widgets (and only when their value
    changed); the whole GUI (onChanged) follows when the job starts, ends or is cancelled."""
    monitor = package_classes()["JobMonitor"]
    timeout = next(f for f in monitor.body if isinstance(f, ast.FunctionDef) and f.name == "onTimeout")
    parents = {c: p for p in ast.walk(timeout) for c in ast.iter_child_nodes(p)}
    calls = [
        n
        for n in ast.walk(timeout)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "_onChanged"
    ]
    assert calls
    for call in calls:
        node = call
        while node in parents and not (isinstance(node, ast.If) and ast.unparse(node.test) == "self._job is None"):
            node = parents[node]
        assert isinstance(node, ast.If), "onChanged must run only once the job ended"
    show = next(f for f in monitor.body if isinstance(f, ast.FunctionDef) and f.name == "showProgress")
    assert sum(isinstance(n, ast.If) for n in ast.walk(show)) == 3  # each widget only when changed


def test_weights_are_listed_only_once_the_sam_packages_are_there():
    enter = next(
        f for f in module_class("SAMFewShotWidget").body if isinstance(f, ast.FunctionDef) and f.name == "enter"
    )
    assert "samReady()" in ast.unparse(enter)
    start_list = next(
        f for f in package_classes()["WeightsPanel"].body if isinstance(f, ast.FunctionDef) and f.name == "startList"
    )
    assert "samReady()" in ast.unparse(start_list)


def test_one_confirmation_before_installing():
    """The PyTorch extension is told not to ask again after our one confirmation."""
    source = (PACKAGE_DIR / "packages_panel.py").read_text()
    assert source.count("confirmOkCancelDisplay(") == 1 and "askTorchConfirmation=False" in source
    assert "askTorchConfirmation: bool = False" in (PACKAGE_DIR / "python_packages.py").read_text()


def _class_members(node: ast.ClassDef) -> set:
    """Methods, properties and self.<attribute> assignments of a class (and ModulePanel's for panels)."""
    members = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
    members |= {t.attr for n in ast.walk(node) if isinstance(n, ast.Assign) for t in n.targets
                for t in (t.elts if isinstance(t, ast.Tuple) else [t])
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    members |= {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    classes = package_classes()
    for base in node.bases:  # a part of the class in its own file (StudyModelLogic of BatchLogic)
        if isinstance(base, ast.Name) and base.id in classes:
            members |= _class_members(classes[base.id])
    return members


def test_panels_call_only_members_that_exist():
    """self.widget.<x>, self.widget.<panel>.<y>, self.logic.<part>.<z> in the panels name real
    members (what a Slicer run would otherwise find out with an AttributeError)."""
    classes = package_classes()
    widget = module_class("SAMFewShotWidget")
    widget_members = _class_members(widget) | {"ui", "logic", "layout", "parent", "resourcePath"}
    panels = {t.attr: v.func.id for n in ast.walk(widget) if isinstance(n, ast.Assign)
              for t, v in [(n.targets[0], n.value)] if isinstance(t, ast.Attribute) and isinstance(v, ast.Call)
              and isinstance(v.func, ast.Name) and v.func.id.endswith("Panel")}
    logic = module_class("SAMFewShotLogic")
    init = next(f for f in logic.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    parts = _constructed_parts(init)
    base = _class_members(classes["ModulePanel"])
    checked = 0
    for name, node in list(classes.items()) + [("SAMFewShotWidget", widget)]:
        for n in ast.walk(node):
            if not isinstance(n, ast.Attribute) or not isinstance(n.value, ast.Attribute):
                continue
            owner = n.value
            if isinstance(owner.value, ast.Name) and owner.value.id == "self" and owner.attr == "widget":
                assert n.attr in widget_members, f"{name}: self.widget.{n.attr} does not exist"
                checked += 1
            elif isinstance(owner.value, ast.Attribute) and owner.value.attr == "widget" and owner.attr in panels:
                members = _class_members(classes[panels[owner.attr]]) | base
                assert n.attr in members, f"{name}: self.widget.{owner.attr}.{n.attr} does not exist"
                checked += 1
            elif isinstance(owner.value, ast.Attribute) and owner.value.attr == "logic" and owner.attr in parts:
                members = _class_members(classes[parts[owner.attr]])
                assert n.attr in members, f"{name}: self.logic.{owner.attr}.{n.attr} does not exist"
                checked += 1
            elif isinstance(owner.value, ast.Name) and owner.value.id == "self" and owner.attr == "logic":
                assert n.attr in set(parts) | {"getParameterNode", "segmentEditorSelection"}, (
                    f"{name}: self.logic.{n.attr}"
                )
                checked += 1
    assert checked > 60


def test_the_effect_calls_only_members_of_its_logic_parts():
    classes = package_classes()
    effect = effect_class()
    parts = {
        "jobs": "ChildJobs",
        "scene": "SceneExchange",
        "packages": "PythonPackages",
        "propagation": "PropagationLogic",
    }
    for n in ast.walk(effect):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and isinstance(n.value.value, ast.Name) \
                and n.value.value.id == "self" and n.value.attr in parts:
            assert n.attr in _class_members(classes[parts[n.value.attr]]), (
                f"self.{n.value.attr}.{n.attr} does not exist"
            )


def test_editor_bridge_functions_exist_and_bind():
    bridge = parse_file(PACKAGE_DIR / "editor_bridge.py")
    functions = {f.name: f for f in bridge.body if isinstance(f, ast.FunctionDef)}
    constants = {t.id for n in bridge.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    used = 0
    for path, tree in all_trees().items():
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "editor_bridge":
                assert n.attr in set(functions) | constants, f"{path.name}: editor_bridge.{n.attr} does not exist"
                used += 1
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name) \
                    and n.func.value.id == "editor_bridge":
                args = functions[n.func.attr].args
                names = [a.arg for a in args.args]
                assert len(n.args) + len(n.keywords) <= len(names), (
                    f"{path.name}: editor_bridge.{n.func.attr} arguments"
                )
                assert len(n.args) + len(n.keywords) >= len(names) - len(args.defaults), (
                    f"{path.name}: {n.func.attr} arguments"
                )
                assert all(k.arg in names for k in n.keywords)
    assert used >= 10


def _constructed_parts(function: ast.FunctionDef) -> dict:
    """{attribute: class name} of every ``self.attribute = ClassName(...)`` in ``function``."""
    return {
        t.attr: v.func.id
        for n in ast.walk(function)
        if isinstance(n, ast.Assign)
        for t, v in [(n.targets[0], n.value)]
        if isinstance(t, ast.Attribute) and isinstance(v, ast.Call) and isinstance(v.func, ast.Name)
    }
