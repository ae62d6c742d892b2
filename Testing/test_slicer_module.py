"""Checks of the Slicer module SAMFewShot/ that run without Slicer.

3D Slicer cannot run here, so the module is checked statically (AST, .ui XML, CMake lists) and,
for the parts that do not need Slicer, by importing it with stand-in ``slicer``/``qt``/``vtk``
modules and running its logic against the real ``samfewshot`` child process.

The Slicer / Qt / CTK / VTK API the module calls is pinned in :data:`CHECKED_APIS`: each entry names
the source file where it was confirmed to exist (read through the reference search, not guessed),
and :func:`test_module_calls_only_checked_slicer_apis` fails when the module calls anything else.
The module's own self-test (SAMFewShotTest, run inside Slicer) covers what needs Slicer.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tomllib
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "SAMFewShot"
MODULE_FILE = MODULE_DIR / "SAMFewShot.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SAMFewShot.ui"
MODULE_CMAKE = MODULE_DIR / "CMakeLists.txt"
EXTENSION_CMAKE = ROOT / "CMakeLists.txt"
LIB_DIR = ROOT / "SAMFewShotLib"

SLICER_UTIL = "Slicer/Slicer Base/Python/slicer/util.py"
SLICER_UTIL_NOTE = SLICER_UTIL + " (current version read in the jamesobutler/Slicer fork of Slicer main)"

#: Every attribute chain rooted at slicer, qt, ctk, vtk (and the Slicer modules SampleData,
#: PyTorchUtils) that SAMFewShot.py uses, with the source where it was confirmed to exist.
#: ``()`` in a chain stands for a call (``slicer.util.getModuleWidget().editor``).
CHECKED_APIS = {
    # slicer.ScriptedLoadableModule (the scripted-module template's base classes)
    "slicer.ScriptedLoadableModule.ScriptedLoadableModule": "Slicer/Slicer Base/Python/slicer/ScriptedLoadableModule.py",
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleWidget": "Slicer/Slicer Base/Python/slicer/ScriptedLoadableModule.py (resourcePath, setup, cleanup)",
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleLogic": "Slicer/Slicer Base/Python/slicer/ScriptedLoadableModule.py (getParameterNode via GetSingletonNode)",
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleTest": "Slicer/Slicer Base/Python/slicer/ScriptedLoadableModule.py (unittest.TestCase with delayDisplay)",
    # slicer.parameterNodeWrapper
    "slicer.parameterNodeWrapper.parameterNodeWrapper": "Slicer/Slicer Base/Python/slicer/parameterNodeWrapper/wrapper.py (connectGui, disconnectGui, SlicerParameterName)",
    "slicer.parameterNodeWrapper.WithinRange": "Slicer/Slicer Base/Python/slicer/parameterNodeWrapper/validators.py (QSpinBox connector: guiConnectors.py)",
    "slicer.parameterNodeWrapper.Choice": "Slicer/Slicer Base/Python/slicer/parameterNodeWrapper/validators.py (QComboBoxToStringableConnector requires Choice: guiConnectors.py)",
    # MRML classes used as parameter types
    "slicer.vtkMRMLScalarVolumeNode": "Slicer/Slicer Utilities/Templates/Modules/Scripted/TemplateKey.py (from slicer import vtkMRMLScalarVolumeNode); qMRMLNodeComboBoxToNodeConnector in parameterNodeWrapper/guiConnectors.py",
    "slicer.vtkMRMLSegmentationNode": "Slicer/Slicer Base/Python/slicer/util.py (slicer.vtkMRMLSegmentationNode in arrayFromSegmentBinaryLabelmap)",
    # slicer.util
    "slicer.util.VTKObservationMixin": SLICER_UTIL_NOTE + " (class VTKObservationMixin: addObserver/removeObserver/removeObservers)",
    "slicer.util.loadUI": SLICER_UTIL_NOTE,
    "slicer.util.childWidgetVariables": SLICER_UTIL_NOTE,
    "slicer.util.tryWithErrorDisplay": SLICER_UTIL_NOTE + " (contextmanager: message, show, waitCursor; re-raises)",
    "slicer.util.confirmOkCancelDisplay": SLICER_UTIL_NOTE + " (returns True in testing mode)",
    "slicer.util.pip_install": SLICER_UTIL_NOTE + " (list of arguments; wraps slicer.packaging.pip_install: Base/Python/slicer/packaging/installer.py)",
    "slicer.util.startupEnvironment": SLICER_UTIL_NOTE,
    "slicer.util.exportNode": SLICER_UTIL_NOTE + " (does not modify the node's storage node, unlike saveNode)",
    "slicer.util.arrayFromVolume": SLICER_UTIL_NOTE,
    "slicer.util.arrayFromVolumeModified": SLICER_UTIL_NOTE,
    "slicer.util.arrayFromSegmentBinaryLabelmap": SLICER_UTIL_NOTE + " (segmentationNode, segmentId, referenceVolumeNode; uses ExportSegmentsToLabelmapNode)",
    "slicer.util.updateSegmentBinaryLabelmapFromArray": SLICER_UTIL_NOTE + " (narray, segmentationNode, segmentId, referenceVolumeNode; uses ImportLabelmapToSegmentationNode)",
    "slicer.util.getModuleWidget().editor": SLICER_UTIL_NOTE + " (getModuleWidget) + Slicer/Slicer Modules/Scripted/SegmentEditor/SegmentEditor.py (SegmentEditorWidget.editor = qMRMLSegmentEditorWidget)",
    "slicer.util.getModuleWidget().editor.undo": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h (public slot undo())",
    "slicer.util.mainWindow": SLICER_UTIL_NOTE,
    "slicer.util.NodeModify": SLICER_UTIL_NOTE + " (context manager: StartModify/EndModify)",
    # slicer.app / slicer.mrmlScene
    "slicer.app.layoutManager": SLICER_UTIL_NOTE + " (slicer.app.layoutManager().sliceWidget(name).mrmlSliceNode() in setSliceViewerLayers)",
    "slicer.app.processEvents": SLICER_UTIL_NOTE + " (delayDisplay, logProcessOutput)",
    "slicer.app.temporaryPath": SLICER_UTIL_NOTE + " (tempDirectory)",
    "slicer.mrmlScene": SLICER_UTIL_NOTE + " (getNodes: GetNumberOfNodes, GetNthNode)",
    "slicer.mrmlScene.AddNewNodeByClass": SLICER_UTIL_NOTE + " (addVolumeFromArray, arrayFromSegmentBinaryLabelmap)",
    "slicer.mrmlScene.RemoveNode": SLICER_UTIL_NOTE + " (arrayFromSegmentBinaryLabelmap)",
    "slicer.mrmlScene.GetNodeByID": SLICER_UTIL_NOTE + " (setSliceViewerLayers)",
    "slicer.mrmlScene.GetFirstNodeByClass": "Slicer/Slicer Utilities/Templates/Modules/Scripted/TemplateKey.py (initializeParameterNode)",
    "slicer.mrmlScene.GetSingletonNode": "Slicer/Slicer Modules/Scripted/SegmentEditor/SegmentEditor.py (singleton tag 'SegmentEditor', vtkMRMLSegmentEditorNode)",
    "slicer.mrmlScene.StartCloseEvent": "Slicer/Slicer Utilities/Templates/Modules/Scripted/TemplateKey.py (addObserver on scene close)",
    "slicer.mrmlScene.EndCloseEvent": "Slicer/Slicer Utilities/Templates/Modules/Scripted/TemplateKey.py",
    "slicer.mrmlScene.Clear": "Slicer/Slicer Utilities/Templates/Modules/Scripted/TemplateKey.py (TemplateKeyTest.setUp)",
    # qt (PythonQt)
    "qt.QTimer": "lassoan/SlicerMONAIAuto3DSeg MONAIAuto3DSeg/MONAIAuto3DSeg.py (qt.QTimer); Slicer util.py _startAsyncProcessHandling",
    "qt.QTimer.singleShot": SLICER_UTIL_NOTE + " (_startAsyncProcessHandling, delayDisplay); MONAIAuto3DSeg.py",
    "qt.QFileDialog.getOpenFileName": "Slicer/Slicer Modules/Scripted/ExtensionWizard/ExtensionWizard.py (static qt.QFileDialog.getExistingDirectory returns a str in PythonQt); Qt QFileDialog::getOpenFileName",
    "qt.Qt.ToolTipRole": "QComboBox.setItemData(index, text, qt.Qt.ToolTipRole) in a Slicer segment editor effect (code search); Qt::ToolTipRole",
    # vtk
    "vtk.vtkCommand.ModifiedEvent": "Slicer/Slicer Utilities/Templates/Modules/Scripted/TemplateKey.py (parameter node observer); parameterNodeWrapper/wrapper.py",
    "vtk.vtkMatrix4x4": SLICER_UTIL_NOTE + " (arrayFromTransformMatrix: vtkMatrix4x4; GetIJKToRASMatrix in itkImageFromVolume)",
    # Slicer modules imported by name
    "SampleData.downloadSample": "Slicer/Slicer Modules/Scripted/SampleData/SampleData.py (def downloadSample(sampleName))",
    "PyTorchUtils.PyTorchUtilsLogic": "fepegar/SlicerPyTorch PyTorchUtils/PyTorchUtils.py",
}

#: Methods called on objects the chains above return (not checkable by the AST rule), with their
#: source. test_confirmed_object_methods_are_used keeps this list from going stale.
CONFIRMED_OBJECT_METHODS = {
    "torchInstalled": "fepegar/SlicerPyTorch PyTorchUtils/PyTorchUtils.py (@staticmethod torchInstalled)",
    "installTorch": "fepegar/SlicerPyTorch PyTorchUtils/PyTorchUtils.py (installTorch(askConfirmation, forceComputationBackend, torchVersionRequirement, torchvisionVersionRequirement) -> torch or None)",
    "saveStateForUndo": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h (public slot)",
    "setSegmentationNode": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h (Q_INVOKABLE slot)",
    "segmentationNode": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h (Q_INVOKABLE)",
    "GetSourceVolumeNode": "Slicer/Slicer Modules/Loadable/Segmentations/MRML/vtkMRMLSegmentEditorNode.h (GetMasterVolumeNode: deprecated alias)",
    "GetSegmentationNode": "Slicer/Slicer Modules/Loadable/Segmentations/MRML/vtkMRMLSegmentEditorNode.h",
    "GetSelectedSegmentID": "Slicer/Slicer Modules/Loadable/Segmentations/MRML/vtkMRMLSegmentEditorNode.h (vtkGetStringMacro)",
    "currentSegmentID": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentSelectorWidget.h",
    "setCurrentSegmentID": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentSelectorWidget.h",
    "setCurrentNode": "Slicer/Slicer Modules/Loadable/Segmentations/Widgets/qMRMLSegmentSelectorWidget.h",
    "JumpSliceByOffsetting": "Slicer/Slicer Libs/MRML/Core/vtkMRMLSliceNode.h (JumpSliceByOffsetting(double r, double a, double s))",
    "GetSingletonTag": "Slicer/Slicer Base/Python/slicer/ScriptedLoadableModule.py (SetSingletonTag on parameter nodes); vtkMRMLNode",
}

#: slicer.util functions that open dialogs: the Logic must never call them (STYLE.md).
DIALOG_FUNCTIONS = {
    "confirmOkCancelDisplay", "confirmYesNoDisplay", "confirmRetryCloseDisplay", "errorDisplay",
    "warningDisplay", "infoDisplay", "messageBox", "delayDisplay", "tryWithErrorDisplay",
}
#: Widget methods named on* that are not user-action handlers (scene observers of the template).
NON_HANDLERS = {"onSceneStartClose", "onSceneEndClose"}

ROOT_NAMES = {"slicer", "qt", "ctk", "vtk", "SampleData", "PyTorchUtils"}


# Helpers -----------------------------------------------------------------------------------


def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), filename=str(MODULE_FILE))


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


def _chain(node: ast.AST) -> str | None:
    """Dotted text of an attribute chain rooted at one of ROOT_NAMES; calls are written ``()``."""
    if isinstance(node, ast.Name):
        return node.id if node.id in ROOT_NAMES else None
    if isinstance(node, ast.Attribute):
        base = _chain(node.value)
        return None if base is None else f"{base}.{node.attr}"
    if isinstance(node, ast.Call):
        base = _chain(node.func)
        return None if base is None else f"{base}()"
    return None


def api_chains(tree: ast.AST) -> set[str]:
    """Every maximal slicer/qt/ctk/vtk/... attribute chain and every name imported from them."""
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
            text = _chain(node)
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


# The module file ---------------------------------------------------------------------------


def test_module_compiles(tmp_path):
    py_compile.compile(str(MODULE_FILE), cfile=str(tmp_path / "SAMFewShot.pyc"), doraise=True)


def test_no_star_import():
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.ImportFrom):
            assert all(alias.name != "*" for alias in node.names), f"star import from {node.module} (line {node.lineno})"


def test_template_shape():
    """Module, ParameterNode, Widget, Logic, Test as in Slicer's scripted-module template."""
    expected = {
        "SAMFewShot": {"ScriptedLoadableModule"},
        "SAMFewShotWidget": {"ScriptedLoadableModuleWidget", "VTKObservationMixin"},
        "SAMFewShotLogic": {"ScriptedLoadableModuleLogic"},
        "SAMFewShotTest": {"ScriptedLoadableModuleTest"},
    }
    for name, bases in expected.items():
        node = module_class(name)
        assert {base.id for base in node.bases if isinstance(base, ast.Name)} == bases, name
    parameterNode = module_class("SAMFewShotParameterNode")
    assert any(isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in parameterNode.decorator_list)
    test = module_class("SAMFewShotTest")
    tests = {f.name for f in test.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")}
    assert {"test_PropagateFillsBetweenAndBeyond", "test_PreviewRejectAndUndoableAccept", "test_CancelLeavesSceneUnchanged"} <= tests
    run_test = next(f for f in test.body if isinstance(f, ast.FunctionDef) and f.name == "runTest")
    called = {n.func.attr for n in ast.walk(run_test) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert tests <= called, f"runTest does not run {tests - called}"


def test_logic_never_touches_widgets_or_dialogs():
    logic = module_class("SAMFewShotLogic")
    for node in ast.walk(logic):
        if isinstance(node, ast.Attribute) and node.attr == "ui":
            raise AssertionError(f"the Logic uses self.ui (line {node.lineno})")
        if isinstance(node, ast.Attribute) and node.attr in DIALOG_FUNCTIONS:
            raise AssertionError(f"the Logic calls {node.attr} (line {node.lineno})")
        if isinstance(node, ast.Attribute) and node.attr in ("QFileDialog", "QMessageBox"):
            raise AssertionError(f"the Logic opens a Qt dialog (line {node.lineno})")
    raised = {n.exc.func.id for n in ast.walk(logic) if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call) and isinstance(n.exc.func, ast.Name)}
    assert "ValueError" in raised


def test_widget_handlers_are_wrapped_in_try_with_error_display():
    widget = module_class("SAMFewShotWidget")
    for method in widget.body:
        if not (isinstance(method, ast.FunctionDef) and method.name.startswith("on")) or method.name in NON_HANDLERS:
            continue
        wrapped = any(
            isinstance(node, ast.With)
            and any(_chain(item.context_expr.func) == "slicer.util.tryWithErrorDisplay" for item in node.items if isinstance(item.context_expr, ast.Call))
            for node in ast.walk(method)
        )
        assert wrapped, f"{method.name} is not wrapped in slicer.util.tryWithErrorDisplay"


def test_module_calls_only_checked_slicer_apis():
    used = api_chains(module_tree())
    unchecked = sorted(used - set(CHECKED_APIS))
    assert not unchecked, f"SAMFewShot.py uses Slicer/Qt/VTK API not confirmed in CHECKED_APIS: {unchecked}"
    stale = sorted(set(CHECKED_APIS) - used)
    assert not stale, f"CHECKED_APIS lists API the module no longer uses: {stale}"
    assert all(source.strip() for source in CHECKED_APIS.values())


def test_confirmed_object_methods_are_used():
    tree = module_tree()
    called = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    called |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}  # getattr names
    assert not sorted(set(CONFIRMED_OBJECT_METHODS) - called)


def test_api_chain_extraction():
    tree = ast.parse(
        "import slicer\nfrom slicer.util import VTKObservationMixin\n"
        "slicer.util.getModuleWidget('SegmentEditor').editor.undo()\n"
        "x = slicer.mrmlScene\nqt.QTimer.singleShot(0, f)\nself.ui.button.enabled = True\n"
    )
    assert api_chains(tree) == {
        "slicer.util.VTKObservationMixin", "slicer.util.getModuleWidget().editor.undo", "slicer.mrmlScene", "qt.QTimer.singleShot",
    }


# The .ui file ------------------------------------------------------------------------------


def test_ui_parses_and_has_every_widget_the_module_uses():
    widgets = ui_widgets()
    root = ET.parse(UI_FILE).getroot()
    assert root.find("widget").get("class") == "qMRMLWidget" and root.find("widget").get("name") == "SAMFewShot"
    used = {
        node.attr
        for node in ast.walk(module_tree())
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"
    }
    assert used, "the module references no self.ui widgets?"
    missing = sorted(used - set(widgets))
    assert not missing, f"self.ui.<name> not in SAMFewShot.ui: {missing}"


def test_ui_names_are_unique():
    root = ET.parse(UI_FILE).getroot()
    names = [e.get("name") for e in root.iter() if e.tag in ("widget", "layout", "spacer") and e.get("name")]
    assert len(names) == len(set(names))


def test_ui_parameter_names_are_parameter_node_fields():
    fields = {
        node.target.id for node in module_class("SAMFewShotParameterNode").body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    root = ET.parse(UI_FILE).getroot()
    bound = {}
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", "SlicerParameterName must be a dynamic property (stdset=0)"
                bound[prop.find("string").text] = widget.get("class")
    assert bound == {"inputVolume": "qMRMLNodeComboBox", "axis": "QComboBox", "suggestCount": "QSpinBox"}
    assert set(bound) <= fields


def test_ui_custom_widgets_are_declared_and_scene_is_connected():
    root = ET.parse(UI_FILE).getroot()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {e.get("class") for e in root.iter("widget")}
    assert {c for c in used if not c.startswith("Q")} <= declared
    receivers = {c.findtext("receiver") for c in root.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert {name for name, cls in ui_widgets().items() if cls in ("qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget")} <= receivers


def test_ui_atlas_and_batch_sections_say_they_are_not_available():
    widgets = ui_widgets()
    root = ET.parse(UI_FILE).getroot()
    for section, note, issue in (("atlasCollapsibleButton", "atlasNoteLabel", "atlas"), ("batchCollapsibleButton", "batchNoteLabel", "batch")):
        assert widgets[section] == "ctkCollapsibleButton" and widgets[note] == "QLabel"
        label = next(w for w in root.iter("widget") if w.get("name") == note)
        text = next(p.findtext("string") for p in label.findall("property") if p.get("name") == "text")
        enabled = next(p.findtext("bool") for p in label.findall("property") if p.get("name") == "enabled")
        assert f"available with the {issue} issue" in text and enabled == "false"


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
    module_scripts = sorted(p.name for p in MODULE_DIR.glob("*.py"))
    assert module_scripts == ["SAMFewShot.py"] and "SAMFewShot.py" in scripts
    resources = {s.replace("${MODULE_NAME}", "SAMFewShot") for s in cmake_set(text, "MODULE_PYTHON_RESOURCES")}
    on_disk = {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    assert resources == on_disk
    assert "slicerMacroBuildScriptedModule(" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    assert (MODULE_DIR / "Testing" / "CMakeLists.txt").read_text().strip() == "add_subdirectory(Python)"


def test_module_cmake_glob_covers_every_lib_file():
    """The glob in SAMFewShot/CMakeLists.txt must match every file of SAMFewShotLib."""
    text = MODULE_CMAKE.read_text()
    assert 'GLOB_RECURSE SAMFEWSHOTLIB_SOURCES' in text
    assert '"${SAMFEWSHOTLIB_SOURCE_DIR}/*.py"' in text
    assert "${SAMFEWSHOTLIB_PYTHON_SCRIPTS}" in " ".join(cmake_set(text, "MODULE_PYTHON_SCRIPTS"))
    files = lib_files()
    assert files
    not_covered = [str(p.relative_to(ROOT)) for p in files if p.suffix != ".py"]
    assert not not_covered, f"SAMFewShotLib files the CMake glob does not install (add them): {not_covered}"
    if shutil.which("git"):
        tracked = subprocess.run(["git", "ls-files", "SAMFewShotLib"], cwd=ROOT, capture_output=True, text=True).stdout.split()
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
foreach(variable EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_DESCRIPTION EXTENSION_ICONURL EXTENSION_SCREENSHOTURLS EXTENSION_DEPENDS)
  file(APPEND "${SAMFEWSHOT_STUB_OUTPUT}" "META|${variable}|${${variable}}\n")
endforeach()
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_extension_configures_and_installs_every_lib_file(tmp_path):
    """Configure the real top-level CMakeLists.txt against a stand-in Slicer package and check
    where every script would be copied: SAMFewShot.py and SAMFewShotLib/** next to each other."""
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
    expected = {"SAMFewShot.py"} | {f"SAMFewShotLib/{p.relative_to(LIB_DIR).as_posix()}" for p in lib_files()}
    assert set(scripts) == expected
    for target, source in scripts.items():
        original = MODULE_FILE if target == "SAMFewShot.py" else LIB_DIR / target.removeprefix("SAMFewShotLib/")
        assert source.read_bytes() == original.read_bytes(), target
    resources = {r[3] for r in records if r[0] == "RESOURCE"}
    assert resources == {"Resources/Icons/SAMFewShot.png", "Resources/UI/SAMFewShot.ui"}
    assert ["UNITTEST", "SAMFewShot.py"] in records
    meta = {r[1]: r[2] for r in records if r[0] == "META"}
    assert meta["EXTENSION_DEPENDS"] == "PyTorch" and all(meta.values())


# Python packages ---------------------------------------------------------------------------


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_python_requirements_match_pyproject_without_simpleitk():
    dependencies = _pyproject()["project"]["dependencies"]
    assert list(module_constant("PYTHON_REQUIREMENTS")) == [d for d in dependencies if not d.lower().startswith("simpleitk")]
    assert not any(r.lower().startswith("simpleitk") for r in module_constant("PYTHON_REQUIREMENTS"))


def test_sam_requirements_match_the_sam_extra():
    sam = [r.split("#")[0].strip() for r in _pyproject()["project"]["optional-dependencies"]["sam"]]
    torch = {r.split(">")[0].split("=")[0].split("<")[0]: r for r in sam}
    assert list(module_constant("SAM_PYTHON_REQUIREMENTS")) == [r for r in sam if not r.startswith(("torch", "torchvision"))]
    assert "torch" + module_constant("TORCH_VERSION_REQUIREMENT") == torch["torch"]
    assert "torchvision" + module_constant("TORCHVISION_VERSION_REQUIREMENT") == torch["torchvision"]
    assert {"SimpleITK", "numpy", "torch", "torchvision"} <= set(module_constant("PINNED_PACKAGES"))


# slicer_support ----------------------------------------------------------------------------


def _calls_on(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name) and node.func.value.id == name
    ]


def test_module_calls_match_slicer_support_signatures():
    """Every commands.* / progress_lines.* call binds to the helper's real signature."""
    from SAMFewShotLib.slicer_support import commands, progress_lines

    tree = module_tree()
    for module_name, module in (("commands", commands), ("progress_lines", progress_lines)):
        calls = _calls_on(tree, module_name)
        assert calls or module_name == "progress_lines"
        for call in calls:
            function = getattr(module, call.func.attr, None)
            assert function is not None, f"{module_name}.{call.func.attr} does not exist"
            positional = [object()] * len(call.args)
            keywords = {k.arg: object() for k in call.keywords if k.arg}
            inspect.signature(function).bind(*positional, **keywords)
    constants = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "commands"}
    assert all(hasattr(commands, name) for name in constants)


def test_module_uses_existing_process_runner_members():
    from SAMFewShotLib.slicer_support.process_runner import ProcessRunner
    from SAMFewShotLib.slicer_support.progress_lines import ProgressTracker

    tree = module_tree()
    runner_members = {
        n.attr for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and (
            (isinstance(n.value, ast.Name) and n.value.id == "runner")
            or (isinstance(n.value, ast.Attribute) and n.value.attr == "runner")
        )
    }
    assert runner_members and all(hasattr(ProcessRunner, m) or m in ("tracker", "stdout_lines", "stderr_lines") for m in runner_members), runner_members
    tracker_members = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "tracker"}
    assert tracker_members and all(hasattr(ProgressTracker, m) for m in tracker_members)
    starts = [c for c in _calls_on(tree, "runner") if c.func.attr == "start"]
    assert starts
    for start in starts:
        inspect.signature(ProcessRunner.start).bind(object(), *[object()] * len(start.args), **{k.arg: object() for k in start.keywords})


def test_engine_choices_are_known_to_the_commands():
    from SAMFewShotLib.slicer_support import commands

    engines = [engine for engine, _description in module_constant("ENGINE_CHOICES")]
    assert engines[0] == "auto" and len(set(engines)) == len(engines)
    for engine in engines:
        commands.engine_requirements(engine, torch_available=True, checkpoints_present=["sam_vit_b"])  # no ValueError
    assert commands.engine_requirements("sam", torch_available=False, checkpoints_present=[]) is not None


# The module imported with stand-in Slicer modules -------------------------------------------


class _Anything:
    """Stand-in for a Slicer base class or validator."""

    def __init__(self, *args, **kwargs):
        pass


def _stub_modules(tmp_path) -> dict:
    slicer = types.ModuleType("slicer")
    slicer.vtkMRMLScalarVolumeNode = type("vtkMRMLScalarVolumeNode", (), {})
    slicer.vtkMRMLSegmentationNode = type("vtkMRMLSegmentationNode", (), {})
    slicer.app = types.SimpleNamespace(temporaryPath=str(tmp_path), processEvents=lambda: None)
    util = types.ModuleType("slicer.util")
    util.VTKObservationMixin = type("VTKObservationMixin", (), {})
    util.startupEnvironment = lambda: dict(os.environ)
    slicer.util = util
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.WithinRange = wrapper.Choice = _Anything
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest"):
        setattr(slm, name, type(name, (), {"__init__": lambda self, *a, **k: None}))
    return {
        "slicer": slicer, "slicer.util": util, "slicer.parameterNodeWrapper": wrapper, "slicer.ScriptedLoadableModule": slm,
        "qt": types.ModuleType("qt"), "vtk": types.ModuleType("vtk"), "ctk": types.ModuleType("ctk"),
    }


@pytest.fixture
def module(tmp_path, monkeypatch):
    """SAMFewShot.py imported with stand-in slicer/qt/vtk modules (only for its Slicer-free parts)."""
    for name, stub in _stub_modules(tmp_path).items():
        monkeypatch.setitem(sys.modules, name, stub)
    spec = importlib.util.spec_from_file_location("SAMFewShot_under_test", MODULE_FILE)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_stub_import_finds_the_lib_in_the_source_tree(module):
    assert Path(module.SAMFEWSHOTLIB_PARENT_FOLDER) == ROOT
    environment = module.SAMFewShotLogic.childEnvironment()
    assert environment["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)


def test_requirement_helpers(module):
    assert module.requirementName("timm>=0.9,<2") == "timm"
    assert module.requirementName("mobilesam-mirror==1.0.0") == "mobilesam-mirror"
    assert module.requirementSatisfied("numpy>=1.0")
    assert not module.requirementSatisfied("numpy>=999")
    assert not module.requirementSatisfied("no-such-distribution-samfewshot>=1")
    pins = module.pinnedPackageConstraints()
    assert any(p.lower().startswith("simpleitk==") for p in pins) and any(p.startswith("numpy==") for p in pins)
    text = module.offlineInstallInstructions(["nibabel>=4.0", "tqdm>=4.60"])
    assert "pip download" in text and "--no-index" in text and "'nibabel>=4.0'" in text
    with pytest.raises(ValueError):
        module.requirementName(">=1.0")


def test_every_requirement_is_installed_in_the_test_environment(module):
    assert module.SAMFewShotLogic.missingPythonRequirements(sam=False) == []


def test_summarize_report(module):
    report = {"expected_dice": {"1": 0.93}, "slice_confidence": {"1": [0.0, 0.9, 1.0, None, 0.4, 0.0]}, "axis": 0}
    dice, slices = module.summarizeReport(report)
    assert dice == pytest.approx(0.93)
    assert slices == [(4, 0.4), (1, 0.9), (2, 1.0)]
    assert module.summarizeReport({}) == (None, [])


class _FakeSegment:
    def __init__(self, name):
        self._name = name

    def GetName(self):
        return self._name


class _FakeSegmentation:
    def __init__(self, segments):
        self._segments = segments

    def GetSegment(self, segment_id):
        return self._segments.get(segment_id)


class _FakeNode:
    def __init__(self, name, segments=None, transform=None, image=True):
        self._name, self._transform, self._image = name, transform, image
        self._segmentation = _FakeSegmentation(segments or {})

    def GetName(self):
        return self._name

    def GetImageData(self):
        return object() if self._image else None

    def GetParentTransformNode(self):
        return self._transform

    def GetSegmentation(self):
        return self._segmentation


def test_check_inputs_names_the_bad_value(module):
    logic = module.SAMFewShotLogic()
    volume = _FakeNode("CT")
    segmentation = _FakeNode("Segmentation", {"Segment_1": _FakeSegment("liver")})
    logic.checkInputs(volume, segmentation, "Segment_1")
    with pytest.raises(ValueError, match="Input volume is not set"):
        logic.checkInputs(None, segmentation, "Segment_1")
    with pytest.raises(ValueError, match="'CT' has no voxels"):
        logic.checkInputs(_FakeNode("CT", image=False))
    with pytest.raises(ValueError, match="harden the transform"):
        logic.checkInputs(_FakeNode("CT", transform=_FakeNode("T")))
    with pytest.raises(ValueError, match="'Segment_9' is not in segmentation 'Segmentation'"):
        logic.checkInputs(volume, segmentation, "Segment_9")


def _logic_on_files(module, image_path: Path, mask: np.ndarray):
    """The module's Logic with the two Slicer-bound export steps replaced by file writes."""
    import SimpleITK as sitk

    logic = module.SAMFewShotLogic()
    logic.pythonExecutable = lambda: sys.executable
    logic.exportVolume = lambda volumeNode, path: shutil.copyfile(image_path, path)
    logic.segmentMask = lambda volumeNode, segmentationNode, segmentId: mask
    assert sitk.ReadImage(str(image_path)).GetSize() == mask.shape[::-1]
    return logic


def _ball_case(tmp_path):
    import SimpleITK as sitk

    shape = (40, 48, 44)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    ball = ((k - 20) * 1.5) ** 2 + (j - 24) ** 2 + (i - 22) ** 2 <= 12 ** 2
    rng = np.random.default_rng(0)
    voxels = (rng.normal(100, 5, shape) + 300 * ball).astype(np.int16)
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing((1.0, 1.0, 1.5))
    image.SetOrigin((-20.0, 10.0, 5.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    path = tmp_path / "volume.nrrd"
    sitk.WriteImage(image, str(path))
    drawn = np.zeros(shape, np.uint8)
    drawn[[16, 20, 24]] = ball[[16, 20, 24]]
    return path, ball, drawn


def test_logic_runs_the_real_child_and_reads_its_result(module, tmp_path):
    """startPropagation -> waitForJob -> finishPropagation against the real samfewshot child."""
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    volume = _FakeNode("ball")
    segmentation = _FakeNode("Segmentation", {"Segment_1": _FakeSegment("ball")})
    job = logic.startPropagation(volume, segmentation, "Segment_1", engine="interpolate")
    assert job.argv[:3] == [sys.executable, "-m", "SAMFewShotLib"] and os.path.isdir(job.folder)
    assert logic.waitForJob(job, timeoutSeconds=300) == 0, job.runner.error_message()
    result = logic.finishPropagation(job)
    assert not os.path.exists(job.folder)
    assert result.labels.shape == ball.shape and result.labels.dtype == np.uint8
    for index in (16, 20, 24):
        assert np.array_equal(result.labels[index], drawn[index])
    assert result.labels[17:24].reshape(7, -1).any(axis=1).all() and not result.labels[:16].any()
    assert result.segmentName == "ball" and result.report["engine"] == "interpolate"
    dice, slices = module.summarizeReport(result.report)
    assert slices and all(0 < c <= 1 for _, c in slices)


def test_logic_reports_bad_input_as_value_error(module, tmp_path):
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    segmentation = _FakeNode("Segmentation", {"Segment_1": _FakeSegment("ball")})
    job = logic.startPropagation(_FakeNode("ball"), segmentation, "Segment_1", engine="fewshot")  # exits 2: not built yet
    assert logic.waitForJob(job, timeoutSeconds=300) == 2
    with pytest.raises(ValueError, match="samfewshot: error"):
        logic.finishPropagation(job)
    assert not os.path.exists(job.folder)
    empty = _logic_on_files(module, image_path, np.zeros_like(drawn))
    with pytest.raises(ValueError, match="'ball' is empty"):
        empty.startPropagation(_FakeNode("ball"), segmentation, "Segment_1")
    with pytest.raises(ValueError, match="Engine must be one of"):
        logic.startPropagation(_FakeNode("ball"), segmentation, "Segment_1", engine="magic")
    assert not list(tmp_path.glob("SAMFewShot-*")), "a failed start left its temporary folder"


def test_logic_cancel_kills_the_child_and_removes_its_files(module, tmp_path):
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    segmentation = _FakeNode("Segmentation", {"Segment_1": _FakeSegment("ball")})
    job = logic.startPropagation(_FakeNode("ball"), segmentation, "Segment_1", engine="register:elastix")
    assert job.running
    logic.cancelJob(job)
    assert not job.running and job.runner.cancelled and not os.path.exists(job.folder)
    with pytest.raises(RuntimeError):
        logic.finishPropagation(job)


def test_logic_suggestion_and_checkpoint_list(module, tmp_path, monkeypatch):
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    job = logic.startSuggestion(_FakeNode("ball"), 3, axis="axial")
    logic.waitForJob(job, timeoutSeconds=300)
    suggestion = logic.finishSuggestion(job)
    assert suggestion["numpy_axis"] == 0 and len(suggestion["slices"]) == 3
    assert all(0 <= s < ball.shape[0] for s in suggestion["slices"])
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path / "home"))
    assert logic.listCheckpoints() == []
    with pytest.raises(ValueError, match="does not exist"):
        logic.importCheckpoint(str(tmp_path / "missing.pth"))
