"""The Propagate Segment Editor effect run without Slicer: its file loaded with stand-in
``slicer``/``qt``/``vtk``/``SegmentEditorEffects`` modules and a stand-in scripted effect, the two
Slicer-bound export steps replaced by file writes, and the real ``samfewshot`` child started,
polled and read. It checks the effect's own flow (Initialize -> progress -> preview parts ->
low-confidence list by slice offset -> auto-update on edits -> Apply as one masked, undoable write
-> Cancel); how Slicer draws and writes segments is the module self-test's job."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EFFECT_FILE = ROOT / "SAMFewShot" / "SegmentEditorPropagate" / "SegmentEditorEffect.py"
TIMEOUT = 300


class _Widget:
    """A permissive Qt widget: remembers attributes, ignores calls it does not know."""

    def __init__(self, *args, **kwargs):
        self.text = args[0] if args and isinstance(args[0], str) else ""
        self.enabled, self.value, self.items, self.data, self.currentIndex = True, 0.0, [], [], -1

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    def blockSignals(self, block):
        return False

    def addItem(self, text, data=None):
        self.items.append(text)
        self.data.append(data)
        if self.currentIndex < 0:
            self.currentIndex = 0

    def clear(self):
        self.items, self.data = [], []

    def findData(self, data):
        return self.data.index(data) if data in self.data else -1

    def itemData(self, index):
        return self.data[index] if 0 <= index < len(self.data) else None


class _Timer(_Widget):
    def __init__(self):
        super().__init__()
        self.active = False

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


class _ScriptedEffect:
    """qSlicerSegmentEditorScriptedEffect stand-in: parameters, options widgets, masked writes."""

    ModificationModeSet, ModificationModeAdd = "Set", "Add"

    def __init__(self, editorNode):
        self.name = ""
        self.parameters = {}
        self.calls = []
        self._editorNode = editorNode

    def setParameterDefault(self, name, value):
        self.parameters.setdefault(name, str(value))

    def setParameter(self, name, value):
        self.parameters[name] = str(value)

    def parameter(self, name):
        return self.parameters[name]

    def doubleParameter(self, name):
        return float(self.parameters[name])

    def addLabeledOptionsWidget(self, label, widget):
        pass

    def addOptionsWidget(self, widget):
        pass

    def parameterSetNode(self):
        return self._editorNode

    def saveStateForUndo(self):
        self.calls.append("undo state")

    def modifySegmentByLabelmap(self, segmentationNode, segmentId, labelmap, mode):
        self.calls.append((mode, segmentId, int(labelmap.array.sum())))


class _Labelmap:
    def __init__(self):
        self.array = np.zeros(0, np.uint8)

    def IsEmpty(self):
        return not self.array.any()


class _Segmentation:
    """vtkSegmentation stand-in with observers."""

    def __init__(self):
        self.observers = {}

    def GetSegment(self, segmentId):
        return types.SimpleNamespace(GetName=lambda: "ball", GetColor=lambda: (1.0, 0.0, 0.0))

    def AddObserver(self, event, callback):
        self.observers[len(self.observers)] = (event, callback)
        return len(self.observers) - 1

    def RemoveObserver(self, tag):
        self.observers.pop(tag, None)


class _Node:
    def __init__(self, name, volume=None):
        self._name, self._volume = name, volume
        self._segmentation = _Segmentation()

    def GetName(self):
        return self._name

    def GetID(self):
        return "vtkMRMLNode" + self._name

    def GetSegmentation(self):
        return self._segmentation

    def GetImageData(self):
        dims = tuple(reversed(self._volume.shape))
        return types.SimpleNamespace(GetDimensions=lambda: dims)

    def GetParentTransformNode(self):
        return None

    def GetIJKToRASMatrix(self, matrix):
        from SAMFewShotLib.slicer_support.coordinates import ijk_to_ras_matrix

        matrix.values = ijk_to_ras_matrix(self._volume)


class _Matrix:
    def __init__(self):
        self.values = np.eye(4)

    def GetElement(self, row, column):
        return float(self.values[row, column])


class _PreviewNode:
    """The preview segmentation: three parts (drawn, propagated, low confidence)."""

    def __init__(self, labels, attributes):
        self.labels, self.attributes, self.inScene = labels, attributes, True
        ids = ["drawn", "propagated", "low"]
        self._segmentation = types.SimpleNamespace(GetNumberOfSegments=lambda: 3, GetNthSegmentID=lambda i: ids[i])

    def GetScene(self):
        return object() if self.inScene else None

    def GetSegmentation(self):
        return self._segmentation

    def GetDisplayNode(self):
        return _Widget()

    def GetAttribute(self, name):
        return self.attributes.get(name)

    def GetBinaryLabelmapRepresentation(self, segmentId, labelmap):
        labelmap.array = (self.labels == {"drawn": 1, "propagated": 2, "low": 3}[segmentId]).astype(np.uint8)


def _stubs(tmp_path):
    slicer = types.ModuleType("slicer")
    slicer.app = types.SimpleNamespace(temporaryPath=str(tmp_path), processEvents=lambda: None, layoutManager=lambda: None)
    util = types.ModuleType("slicer.util")
    util.startupEnvironment = lambda: {}
    util.tryWithErrorDisplay = lambda *a, **k: contextlib.nullcontext()
    util.confirmOkCancelDisplay = lambda *a, **k: True
    util.mainWindow = lambda: types.SimpleNamespace(cursor=None)
    slicer.util = util
    slicer.vtkOrientedImageData = _Labelmap
    slicer.qSlicerSegmentEditorAbstractEffect = _ScriptedEffect
    slicer.mrmlScene = None
    qt = types.ModuleType("qt")
    for name in ("QComboBox", "QDoubleSpinBox", "QPushButton", "QHBoxLayout", "QProgressBar", "QLabel", "QListWidget", "QIcon"):
        setattr(qt, name, _Widget)
    qt.QTimer = _Timer
    vtk = types.ModuleType("vtk")
    vtk.vtkMatrix4x4 = _Matrix
    effects = types.ModuleType("SegmentEditorEffects")
    effects.AbstractScriptedSegmentEditorEffect = type(
        "AbstractScriptedSegmentEditorEffect", (), {"__init__": lambda self, scriptedEffect: setattr(self, "scriptedEffect", scriptedEffect)})
    core = types.ModuleType("vtkSegmentationCorePython")
    core.vtkSegmentation = types.SimpleNamespace(SegmentModified=1, SourceRepresentationModified=2)
    return {"slicer": slicer, "slicer.util": util, "qt": qt, "vtk": vtk, "ctk": types.ModuleType("ctk"),
            "SegmentEditorEffects": effects, "vtkSegmentationCorePython": core}


@pytest.fixture
def effect_module(tmp_path, monkeypatch):
    for name, stub in _stubs(tmp_path).items():
        monkeypatch.setitem(sys.modules, name, stub)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [n for n in sys.modules if n == "SAMFewShotSlicerLib" or n.startswith("SAMFewShotSlicerLib.")]:
        monkeypatch.delitem(sys.modules, name)
    spec = importlib.util.spec_from_file_location("SegmentEditorPropagateEffect_under_test", EFFECT_FILE)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    yield loaded
    for name in [n for n in sys.modules if n == "SAMFewShotSlicerLib" or n.startswith("SAMFewShotSlicerLib.")]:
        del sys.modules[name]


def _case(tmp_path):
    from SAMFewShotLib.volume import Volume
    from SAMFewShotLib.volume_io import write_volume

    shape = (40, 48, 44)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    ball = ((k - 20) * 1.5) ** 2 + (j - 24) ** 2 + (i - 22) ** 2 <= 12 ** 2
    voxels = (np.random.default_rng(0).normal(100, 5, shape) + 300 * ball).astype(np.int16)
    volume = Volume(voxels, spacing=(1.0, 1.0, 1.5), origin=(-20.0, 10.0, 5.0))
    path = tmp_path / "volume.nrrd"
    write_volume(volume, path)
    drawn = np.zeros(shape, np.uint8)
    drawn[[16, 20, 24]] = ball[[16, 20, 24]]
    return path, volume, drawn


def test_effect_initializes_previews_updates_applies_and_cancels(effect_module, tmp_path):
    from SAMFewShotLib.volume_io import read_volume

    image_path, volume, drawn = _case(tmp_path)
    volumeNode, segmentationNode = _Node("CT", volume), _Node("Segmentation")
    editorNode = types.SimpleNamespace(GetSourceVolumeNode=lambda: volumeNode, GetSegmentationNode=lambda: segmentationNode,
                                       GetSelectedSegmentID=lambda: "Segment_1")
    nodes = {node.GetID(): node for node in (volumeNode, segmentationNode)}
    sys.modules["slicer"].mrmlScene = types.SimpleNamespace(GetNodeByID=nodes.get)
    scripted = _ScriptedEffect(editorNode)
    effect = effect_module.SegmentEditorEffect(scripted)
    assert scripted.name == "Propagate"
    scene = effect.scene
    scene.exportVolume = lambda node, path: shutil.copyfile(image_path, path)
    scene.volumeGeometry = lambda node: read_volume(image_path)
    scene.segmentMask = lambda *args: drawn
    scene.newSegmentationFromLabels = lambda name, node, labels, segments, attributes: _PreviewNode(labels, attributes)
    removed = []
    scene.removePreview = lambda node: node is not None and removed.append(node)
    effect.jobs.pythonExecutable = lambda: sys.executable
    effect.packages.missingPythonRequirements = lambda **kwargs: []

    effect.setupOptionsFrame()
    effect.setMRMLDefaults()
    scripted.setParameter("Engine", "interpolate")
    scripted.setParameter("ConfidenceThreshold", 1.01 - 0.02)  # flag every predicted slice under 0.99
    effect.updateGUIFromMRML()
    assert effect.initializeButton.text == "Initialize" and not effect.applyButton.enabled

    effect.onInitialize()
    assert effect.job is not None and effect.pollTimer.active and not effect.initializeButton.enabled
    deadline = time.monotonic() + TIMEOUT
    while effect.job is not None:
        assert time.monotonic() < deadline, "the child did not finish"
        effect.onPoll()
        time.sleep(0.05)
    assert effect.previewNode is not None and effect.progressBar.value == 100
    assert effect.initializeButton.text == "Update" and effect.applyButton.enabled and effect.cancelButton.enabled
    labels = effect.previewNode.labels
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and np.array_equal(labels == 1, drawn > 0)
    assert effect.lowSlices and all(16 < s < 24 for s in effect.lowSlices)  # interpolate fills only between
    assert all(item.startswith("Red S ") and item.endswith(" mm") for item in effect.lowConfidenceList.items)

    # the user corrects a slice: the preview is recomputed after a pause
    assert segmentationNode.GetSegmentation().observers
    _event, callback = next(iter(segmentationNode.GetSegmentation().observers.values()))
    callback(None, None)
    assert effect.updateTimer.active

    effect.onNextLowConfidence()
    assert effect.currentLowSlice == effect.lowSlices[0]

    preview = effect.previewNode
    effect.onApply()
    assert scripted.calls[0] == "undo state"  # one undo step, before every write
    modes = [call[0] for call in scripted.calls[1:]]
    assert modes[0] == "Set" and set(modes[1:]) <= {"Add"}
    assert sum(call[2] for call in scripted.calls[1:]) == int((labels > 0).sum())
    assert removed[-1] is preview and effect.previewNode is None and not segmentationNode.GetSegmentation().observers

    effect.onInitialize()
    effect.onCancel()  # stops the running child and leaves no preview
    assert effect.job is None and effect.previewNode is None
    assert "unchanged" in effect.statusLabel.text
