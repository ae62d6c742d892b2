"""The Slicer module's logic run without Slicer: SAMFewShot.py and SAMFewShotSlicerLib imported
with stand-in ``slicer``/``qt``/``vtk`` modules, the two Slicer-bound export steps replaced by file
writes, and the real ``samfewshot`` child processes (propagate, suggest, weights, atlas, batch)
started, polled, cancelled and read exactly as in Slicer. What needs Slicer itself (nodes,
previews, Accept, undo) is covered by the module's self-test (SAMFewShotTest)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from SAMFewShotLib.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
MODULE_FILE = ROOT / "SAMFewShot" / "SAMFewShot.py"
TIMEOUT = 300


def registered(command: str) -> bool:
    """Whether ``samfewshot <command>`` exists in this checkout (atlas and batch arrive with
    their own issues)."""
    parser = build_parser()
    return command in next(a for a in parser._actions if a.dest == "command").choices


# Stand-in Slicer modules -------------------------------------------------------------------


class _Anything:
    """Stand-in for a Slicer base class or validator."""

    def __init__(self, *args, **kwargs):
        pass


class _Reference:
    """vtk.reference: an output argument."""

    def __init__(self, value):
        self.value = value

    def __str__(self):
        return str(self.value)


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
    for name in (
        "ScriptedLoadableModule",
        "ScriptedLoadableModuleWidget",
        "ScriptedLoadableModuleLogic",
        "ScriptedLoadableModuleTest",
    ):
        setattr(slm, name, type(name, (), {"__init__": lambda self, *a, **k: None}))
    vtk = types.ModuleType("vtk")
    vtk.reference = _Reference
    return {
        "slicer": slicer,
        "slicer.util": util,
        "slicer.parameterNodeWrapper": wrapper,
        "slicer.ScriptedLoadableModule": slm,
        "qt": types.ModuleType("qt"),
        "vtk": vtk,
        "ctk": types.ModuleType("ctk"),
    }


def _forget_module_package() -> None:
    for name in [n for n in sys.modules if n == "SAMFewShotSlicerLib" or n.startswith("SAMFewShotSlicerLib.")]:
        del sys.modules[name]


@pytest.fixture
def module(tmp_path, monkeypatch):
    """SAMFewShot.py imported with stand-in slicer/qt/vtk modules (only for its Slicer-free parts);
    its package is imported afresh, so that it sees this test's stand-ins."""
    for name, stub in _stub_modules(tmp_path).items():
        monkeypatch.setitem(sys.modules, name, stub)
    monkeypatch.setattr(sys, "path", list(sys.path))
    _forget_module_package()
    spec = importlib.util.spec_from_file_location("SAMFewShot_under_test", MODULE_FILE)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    yield loaded
    _forget_module_package()


# Stand-in nodes ----------------------------------------------------------------------------


class _FakeSegment:
    def __init__(self, name, color=(0.2, 0.4, 0.6), terminology=""):
        self._name, self._color, self._terminology = name, color, terminology

    def GetName(self):
        return self._name

    def GetColor(self):
        return self._color

    @staticmethod
    def GetTerminologyEntryTagName():
        return "TerminologyEntry"

    def GetTag(self, tag, value):
        if tag != "TerminologyEntry" or not self._terminology:
            return False
        value.value = self._terminology
        return True


class _FakeSegmentation:
    def __init__(self, segments):
        self._segments = segments

    def GetSegment(self, segment_id):
        return self._segments.get(segment_id)

    def GetNumberOfSegments(self):
        return len(self._segments)

    def GetNthSegmentID(self, index):
        return list(self._segments)[index]


class _FakeNode:
    def __init__(self, name, segments=None, transform=None, image=True):
        self._name, self._transform, self._image = name, transform, image
        self._segmentation = _FakeSegmentation(segments or {})

    def GetName(self):
        return self._name

    def GetID(self):
        return f"vtkMRMLNode{self._name}"

    def GetImageData(self):
        return object() if self._image else None

    def GetParentTransformNode(self):
        return self._transform

    def GetSegmentation(self):
        return self._segmentation


def _logic_on_files(module, image_path: Path, masks):
    """The module's Logic with the two Slicer-bound export steps replaced by file writes:
    every volume is ``image_path``; ``masks`` is one (k, j, i) mask or {segment ID: mask}."""
    from SAMFewShotLib.volume_io import read_volume

    logic = module.SAMFewShotLogic()
    logic.jobs.pythonExecutable = lambda: sys.executable
    logic.scene.exportVolume = lambda volumeNode, path: shutil.copyfile(image_path, path)
    logic.scene.volumeGeometry = lambda volumeNode: read_volume(image_path)
    logic.scene.segmentMask = lambda volumeNode, segmentationNode, segmentId: (
        masks[segmentId] if isinstance(masks, dict) else masks
    )
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


def _ball_segmentation():
    return _FakeNode("Segmentation", {"Segment_1": _FakeSegment("ball")})


def _dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


# Import and inputs -------------------------------------------------------------------------


def test_stub_import_finds_the_lib_in_the_source_tree(module):
    assert Path(module.SAMFEWSHOTLIB_PARENT_FOLDER) == ROOT
    environment = module.SAMFewShotLogic().jobs.childEnvironment()
    assert environment["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    logic = module.SAMFewShotLogic()
    assert logic.atlas.jobs is logic.jobs and logic.batch.scene is logic.scene and logic.propagation.jobs is logic.jobs


def test_every_requirement_is_installed_in_the_test_environment(module):
    pytest.importorskip("torch", reason="the full test environment (sam and dist extras) is not installed")
    logic = module.SAMFewShotLogic()
    assert logic.packages.missingPythonRequirements(sam=True, dist=True) == []
    assert len(logic.packages.pythonRequirements(sam=True, dist=True)) > len(logic.packages.pythonRequirements())
    assert logic.packages.torchProblem() is None and logic.packages.samReady()


def test_an_old_torch_is_refused_and_sam_readiness_is_remembered_until_refreshed(module, monkeypatch):
    pytest.importorskip("torch", reason="SAM readiness needs the sam extra installed")
    packages = module.SAMFewShotLogic().packages
    assert packages.samReady()
    monkeypatch.setattr(type(packages), "torchVersion", staticmethod(lambda: "2.0.1"))
    assert packages.samReady()  # remembered
    assert not packages.samReady(refresh=True)
    assert "2.0.1" in packages.torchProblem()
    with pytest.raises(RuntimeError, match="PyTorch 2.0.1 is installed"):
        packages.installPythonRequirements(sam=True)


def test_check_inputs_names_the_bad_value(module):
    logic = module.SAMFewShotLogic()
    volume = _FakeNode("CT")
    segmentation = _FakeNode("Segmentation", {"Segment_1": _FakeSegment("liver")})
    logic.scene.checkInputs(volume, segmentation, "Segment_1")
    logic.scene.checkInputs(volume, segmentation)  # a whole segmentation (atlas create, batch reference)
    with pytest.raises(ValueError, match="Input volume is not set"):
        logic.scene.checkInputs(None, segmentation, "Segment_1")
    with pytest.raises(ValueError, match="'CT' has no voxels"):
        logic.scene.checkInputs(_FakeNode("CT", image=False))
    with pytest.raises(ValueError, match="harden the transform"):
        logic.scene.checkInputs(_FakeNode("CT", transform=_FakeNode("T")))
    with pytest.raises(ValueError, match="'Segment_9' is not in segmentation 'Segmentation'"):
        logic.scene.checkInputs(volume, segmentation, "Segment_9")
    with pytest.raises(ValueError, match="Segmentation is not set"):
        logic.scene.checkInputs(volume, None, "Segment_1")


def test_segmentation_labels_keep_names_colours_terminology_and_grid(module, tmp_path):
    """exportSegmentationLabels writes every segment as values 1..n on the exported image's grid,
    later segments winning where they overlap, with names, colours and terminology."""
    from SAMFewShotLib.volume_io import read_labels, read_volume

    image_path, ball, drawn = _ball_case(tmp_path)
    second = np.zeros_like(drawn)
    second[20, 20:30, 20:30] = 1
    logic = _logic_on_files(module, image_path, {"Segment_1": ball.astype(np.uint8), "Segment_2": second})
    terminology = (
        "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical "
        "Structure~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^"
    )
    segmentation = _FakeNode(
        "S", {"Segment_1": _FakeSegment("ball", (1.0, 0.0, 0.0), terminology), "Segment_2": _FakeSegment("box")}
    )
    out = tmp_path / "labels.seg.nrrd"
    logic.scene.exportSegmentationLabels(_FakeNode("CT"), segmentation, str(out))
    labels = read_labels(out)
    assert read_volume(image_path).same_grid(labels.volume)
    assert [(s.value, s.name, s.color, s.terminology) for s in labels.segments] == [
        (1, "ball", (1.0, 0.0, 0.0), terminology), (2, "box", (0.2, 0.4, 0.6), None)]
    assert np.array_equal(labels.array == 2, second > 0)
    assert np.array_equal(labels.array == 1, ball & ~(second > 0))
    empty = _logic_on_files(module, image_path, {"Segment_1": np.zeros_like(drawn)})
    with pytest.raises(ValueError, match="'S' has no voxel"):
        empty.scene.exportSegmentationLabels(
            _FakeNode("CT"), _FakeNode("S", {"Segment_1": _FakeSegment("x")}), str(out)
        )


def test_a_result_off_the_image_grid_is_refused(module, tmp_path):
    from SAMFewShotLib.volume import LabelVolume, Volume
    from SAMFewShotLib.volume_io import read_volume, write_labels

    image_path, ball, drawn = _ball_case(tmp_path)
    shifted = tmp_path / "shifted.nrrd"
    write_labels(LabelVolume(Volume(drawn, spacing=(1.0, 1.0, 1.5), origin=(0.0, 0.0, 0.0))), shifted)
    with pytest.raises(RuntimeError, match="not on the input volume's grid"):
        module.SAMFewShotLogic().scene.readResultLabels(str(shifted), read_volume(image_path))


# Propagate and suggest ---------------------------------------------------------------------


def test_logic_runs_the_real_child_and_reads_its_result(module, tmp_path):
    """propagation.start -> jobs.waitForJob -> propagation.finish against the real samfewshot child."""
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    job = logic.propagation.start(_FakeNode("ball"), _ball_segmentation(), "Segment_1", engine="interpolate")
    assert job.argv[:3] == [sys.executable, "-m", "SAMFewShotLib"] and os.path.isdir(job.folder)
    assert logic.jobs.waitForJob(job, timeoutSeconds=TIMEOUT) == 0, job.runner.error_message()
    result = logic.propagation.finish(job)
    assert not os.path.exists(job.folder)
    assert result.labels.shape == ball.shape and result.labels.dtype == np.uint8
    for index in (16, 20, 24):
        assert np.array_equal(result.labels[index], drawn[index])
    assert result.labels[17:24].reshape(7, -1).any(axis=1).all() and not result.labels[:16].any()
    assert result.segmentName == "ball" and result.report["engine"] == "interpolate"
    with pytest.raises(RuntimeError, match="already finished"):
        logic.propagation.finish(job)
    # the preview parts: drawn slices exactly as drawn, predicted voxels elsewhere, nothing lost
    assert np.array_equal(result.drawn, drawn)
    parts = result.parts(threshold=0.5)
    assert np.array_equal(parts.drawn, drawn) and np.array_equal(parts.union(), result.labels)


def test_logic_reports_bad_input_as_value_error(module, tmp_path):
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    segmentation = _ball_segmentation()
    job = logic.propagation.start(_FakeNode("ball"), segmentation, "Segment_1", engine="sam")  # no checkpoint: exit 2
    assert logic.jobs.waitForJob(job, timeoutSeconds=TIMEOUT) == 2
    with pytest.raises(ValueError, match="samfewshot: error"):
        logic.propagation.finish(job)
    assert not os.path.exists(job.folder)
    empty = _logic_on_files(module, image_path, np.zeros_like(drawn))
    with pytest.raises(ValueError, match="'ball' is empty"):
        empty.propagation.start(_FakeNode("ball"), segmentation, "Segment_1")
    with pytest.raises(ValueError, match="Engine must be one of"):
        logic.propagation.start(_FakeNode("ball"), segmentation, "Segment_1", engine="magic")
    assert not list(tmp_path.glob("SAMFewShot-*")), "a failed start left its temporary folder"


def test_logic_passes_the_meta_init_file(module, tmp_path):
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    job = logic.propagation.start(_FakeNode("ball"), _ball_segmentation(), "Segment_1", engine="meta",
                                 checkpoint="sam_vit_b", init=str(tmp_path / "init.pt"))
    logic.jobs.cancelJob(job)
    assert job.argv[job.argv.index("--init") + 1] == str(tmp_path / "init.pt")
    assert job.argv[job.argv.index("--checkpoint") + 1] == "sam_vit_b"


def test_logic_cancel_kills_the_child_and_removes_its_files(module, tmp_path):
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    job = logic.propagation.start(_FakeNode("ball"), _ball_segmentation(), "Segment_1", engine="register:elastix")
    assert job.running
    logic.jobs.cancelJob(job)
    assert not job.running and job.runner.cancelled and not os.path.exists(job.folder)
    with pytest.raises(RuntimeError):
        logic.propagation.finish(job)


def test_logic_suggestion(module, tmp_path):
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    job = logic.propagation.startSuggestion(_FakeNode("ball"), 3, axis="axial")
    logic.jobs.waitForJob(job, timeoutSeconds=TIMEOUT)
    suggestion = logic.propagation.finishSuggestion(job)
    assert suggestion["numpy_axis"] == 0 and len(suggestion["slices"]) == 3
    assert all(0 <= s < ball.shape[0] for s in suggestion["slices"])
    with pytest.raises(ValueError, match="Job kind must be 'propagate', not 'suggest'"):
        logic.propagation.finish(job)


# SAM checkpoints ---------------------------------------------------------------------------


def test_weights_list_import_and_verify_run_as_jobs(module, tmp_path, monkeypatch):
    """The Model row's three commands run as child processes and are read like the others."""
    pytest.importorskip("torch", reason="the tiny SAM checkpoint needs torch")
    from Testing.tiny_sam import save_tiny_checkpoint

    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path / "home"))
    logic = module.SAMFewShotLogic()
    logic.jobs.pythonExecutable = lambda: sys.executable

    def run(job):
        assert logic.jobs.waitForJob(job, timeoutSeconds=TIMEOUT) in (0, 2)
        return job

    with pytest.raises(ValueError, match="does not exist"):
        logic.weights.startImport(str(tmp_path / "missing.pth"))

    tiny = save_tiny_checkpoint(tmp_path / "tiny.pth", seed=3)
    job = run(logic.weights.startImport(str(tiny)))
    with pytest.raises(ValueError, match="Job kind must be 'weights list', not 'weights import'"):
        logic.weights.finishList(job)
    assert logic.weights.finishCommand(job).startswith("Imported tiny")
    rows = logic.weights.finishList(run(logic.weights.startList()))
    assert "sam_vit_b" in [row.name for row in rows]  # the registry's rows, not present
    usable = [row for row in rows if row.usable]
    assert [row.name for row in usable] == ["tiny"] and usable[0].size == tiny.stat().st_size
    assert "tiny" in logic.weights.finishCommand(run(logic.weights.startVerify()))


# Atlas -------------------------------------------------------------------------------------


@pytest.mark.skipif(not registered("atlas"), reason="samfewshot atlas is not registered in this checkout yet")
def test_atlas_create_and_info_run_as_jobs(module, tmp_path):
    """A bundle made of the ball image and its label (atlas create, real child), then described
    (atlas info, real child): its name, modality and the structure's name come back."""
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, {"Segment_1": ball.astype(np.uint8)})
    bundle = str(tmp_path / "ball atlas.zip")
    job = logic.atlas.startCreate(_FakeNode("ball"), _ball_segmentation(), bundle, name="ball atlas", modality="MR")
    assert logic.jobs.waitForJob(job, TIMEOUT) == 0, job.runner.error_message()
    assert logic.atlas.finishCreate(job) == bundle and os.path.isfile(bundle)
    assert type(logic.atlas).bundlePath(bundle) == bundle

    job = logic.atlas.startInfo(bundle)
    assert logic.jobs.waitForJob(job, TIMEOUT) == 0, job.runner.error_message()
    info = logic.atlas.finishInfo(job)
    assert (info.name, info.modality, info.atlases) == ("ball atlas", "MR", 1)
    assert [(label.name, label.color) for label in info.labels] == [("ball", (0.2, 0.4, 0.6))]
    assert not os.path.exists(job.folder)


#: A stand-in ``python -m SAMFewShotLib atlas apply`` (the real one registers with elastix, ~90 s
#: here; the module's self-test runs it in Slicer): writes a .seg.nrrd on IMAGE's grid with one
#: named segment (name, colour, terminology) where the image is bright, and the report.
FAKE_ATLAS_APPLY = """
import json, sys
from SAMFewShotLib.volume import LabelVolume, Segment
from SAMFewShotLib.volume_io import read_volume, write_labels
argv = sys.argv[1:]
assert argv[:4] == ["-m", "SAMFewShotLib", "atlas", "apply"], argv
image = read_volume(argv[4])
segment = Segment(7, "ball", (0.9, 0.1, 0.1), TERMINOLOGY)
labels = LabelVolume(image.with_array((image.array > 250).astype("uint8") * 7), (segment,))
write_labels(labels, argv[argv.index("-o") + 1])
json.dump({"fusion": argv[argv.index("--fusion") + 1]}, open(argv[argv.index("--report") + 1], "w"))
"""
TERMINOLOGY = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
               "~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in child is a POSIX script")
def test_atlas_apply_result_is_read_with_names_and_terminology(module, tmp_path):
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    script = tmp_path / "fake_python"
    script.write_text(f"#!{sys.executable}\nTERMINOLOGY = {TERMINOLOGY!r}\n" + FAKE_ATLAS_APPLY)
    script.chmod(0o755)
    logic.jobs.pythonExecutable = lambda: str(script)
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    job = logic.atlas.startApply(_FakeNode("ball"), str(folder / "manifest.json"), fusion="staple")
    assert job.details["bundle"] == str(folder) and job.outputPath.endswith(".seg.nrrd")
    assert logic.jobs.waitForJob(job, TIMEOUT) == 0, job.runner.error_message()
    result = logic.atlas.finishApply(job)
    assert [(s.value, s.name, s.color, s.terminology) for s in result.labels.segments] == [
        (7, "ball", (0.9, 0.1, 0.1), TERMINOLOGY)
    ]
    assert np.array_equal(result.labels.array == 7, ball) and result.report == {"fusion": "staple"}
    assert result.bundle == str(folder) and not os.path.exists(job.folder)


def test_atlas_bundle_paths(module, tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    AtlasLogic = type(module.SAMFewShotLogic().atlas)
    assert AtlasLogic.bundlePath(str(folder)) == str(folder)
    assert AtlasLogic.bundlePath(str(folder / "manifest.json")) == str(folder)
    (tmp_path / "notes.zip").write_bytes(b"not a zip")
    for bad in ("", str(tmp_path), str(tmp_path / "notes.zip"), str(tmp_path / "absent.zip")):
        with pytest.raises(ValueError, match="atlas bundle"):
            AtlasLogic.bundlePath(bad)


def test_atlas_apply_refuses_bad_options_before_starting(module, tmp_path):
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="needs a SAM checkpoint"):
        logic.atlas.startApply(_FakeNode("ball"), str(folder), refine=True)
    with pytest.raises(ValueError, match="Fusion must be one of"):
        logic.atlas.startApply(_FakeNode("ball"), str(folder), fusion="mean")
    with pytest.raises(ValueError, match="Input volume is not set"):
        logic.atlas.startApply(None, str(folder))
    assert not list(tmp_path.glob("SAMFewShot-*")), "a refused start left its temporary folder"


# Batch -------------------------------------------------------------------------------------


def test_batch_refuses_bad_inputs_before_starting(module, tmp_path):
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    volume = _FakeNode("ball")
    cases = {
        "output folder": dict(outputFolder="", volumeNodes=[volume], modelKind="atlas", modelPath=str(image_path)),
        "not both": dict(
            outputFolder=str(tmp_path / "o"), volumeNodes=[volume], inputFolder=str(tmp_path), modelKind="atlas"
        ),
        "existing input folder": dict(outputFolder=str(tmp_path / "o"), inputFolder=str(tmp_path / "absent")),
        "Model kind": dict(outputFolder=str(tmp_path / "o"), volumeNodes=[volume], modelKind="network"),
        "batch model": dict(
            outputFolder=str(tmp_path / "o"),
            volumeNodes=[volume],
            modelKind="atlas",
            modelPath=str(tmp_path / "absent.zip"),
        ),
        "local:N": dict(
            outputFolder=str(tmp_path / "o"),
            volumeNodes=[volume],
            modelKind="atlas",
            modelPath=str(image_path),
            scheduler="gpu",
        ),
        "harden": dict(
            outputFolder=str(tmp_path / "o"), volumeNodes=[_FakeNode("v", transform=_FakeNode("T"))], modelKind="atlas"
        ),
    }
    for message, kwargs in cases.items():
        with pytest.raises(ValueError, match=message):
            logic.batch.start(**kwargs)
    assert not list(tmp_path.glob("SAMFewShot-*")), "a refused start left its temporary folder"


#: A stand-in ``python -m SAMFewShotLib batch`` (the real one registers every case with elastix,
#: ~90 s per case here): it records its argv and inputs (a folder stands for its files), prints the
#: contract's per-case line for each input (case id = file stem): a case named *wait* waits for
#: the file GO first, *bad* fails (exit 3 at the end), *crash* stops the batch with one error line
#: and exit 2. The argv itself is checked against the real parser in
#: Testing/slicer_support/test_slicer_batch_commands.py.
FAKE_BATCH = """
import json, os, sys, time
from pathlib import Path
argv = sys.argv[1:]
assert argv[:3] == ["-m", "SAMFewShotLib", "batch"], argv
out = Path(argv[argv.index("-o") + 1])
out.mkdir(parents=True, exist_ok=True)
given = argv[3:argv.index("--model")]
inputs = [str(f) for p in given for f in (sorted(Path(p).iterdir()) if Path(p).is_dir() else [Path(p)])]
annotation = argv[argv.index("--annotation") + 1] if "--annotation" in argv else None
(out / "argv.json").write_text(json.dumps({"argv": argv, "inputs": [os.path.getsize(p) for p in inputs],
                                          "annotation": annotation and os.path.getsize(annotation)}))
failed = False
for n, path in enumerate(inputs):
    case = Path(path).name[: -len(".nrrd")]
    while "wait" in case and not (out / "GO").exists():
        time.sleep(0.01)
    if "crash" in case:
        print("samfewshot: error: the stand-in batch stops at " + case, file=sys.stderr)
        sys.exit(2)
    if "bad" in case:
        failed = True
        line = {"case": case, "status": "failed", "seconds": 0.5, "output": None, "error": "ValueError: bad case"}
    else:
        (out / f"{case}.seg.nrrd").write_bytes(b"labels")
        line = {"case": case, "status": "done", "seconds": 1.5, "output": str(out / f"{case}.seg.nrrd"), "error": None}
    print(json.dumps(line), flush=True)
    print(json.dumps({"stage": "batch", "done": n + 1, "total": len(inputs)}), flush=True)
sys.exit(3 if failed else 0)
"""


def _fake_python(tmp_path) -> str:
    script = tmp_path / "fake_python"
    script.write_text(f"#!{sys.executable}\n" + FAKE_BATCH)
    script.chmod(0o755)
    return str(script)


def _poll_until(logic, job, condition, seconds: float = 60) -> list:
    """Poll like the module's timer (every 20 ms) until ``condition()``; the new case statuses."""
    import time

    seen, deadline = [], time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, job.runner.error_message()
        logic.jobs.pollJob(job)
        seen += logic.batch.readCases(job)
        time.sleep(0.02)
    return seen


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in child is a POSIX script")
def test_batch_over_scene_volumes_with_a_reference_fills_the_table_while_it_runs(module, tmp_path):
    """Two scene volumes (one fails) and the drawn ball as reference annotation: the exported
    files reach the child, the case lines fill the table while it runs, exit 3 is not an error,
    the failed case is in the table and only the done one is loadable."""
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, {"Segment_1": drawn})
    logic.jobs.pythonExecutable = lambda: _fake_python(tmp_path)
    output = tmp_path / "batch out"
    job = logic.batch.start(
        str(output), volumeNodes=[_FakeNode("CT 1"), _FakeNode("bad wait/1")], modelKind="reference",
        referenceVolume=_FakeNode("ball"), referenceSegmentation=_ball_segmentation(), engine="interpolate",
        checkpoint="sam_vit_b",
    )
    table = job.details["table"]
    assert [(row.case, row.status) for row in table.rows] == [("CT_1", "pending"), ("bad_wait_1", "pending")]
    assert job.details["caseVolumes"] == {"CT_1": "vtkMRMLNodeCT 1", "bad_wait_1": "vtkMRMLNodebad wait/1"}
    seen = _poll_until(logic, job, lambda: table.counts()["done"] == 1)
    assert [status.case for status in seen] == ["CT_1"] and job.running  # read while the child runs
    (output / "GO").touch()
    seen = _poll_until(logic, job, lambda: not job.running)
    assert logic.batch.finish(job) is table
    assert [(row.case, row.status) for row in table.rows] == [("CT_1", "done"), ("bad_wait_1", "failed")]
    assert table.rows[1].error == "ValueError: bad case" and [row.case for row in table.loadable()] == ["CT_1"]
    recorded = __import__("json").loads((output / "argv.json").read_text())
    assert recorded["inputs"] == [image_path.stat().st_size] * 2 and recorded["annotation"] > 0
    argv = recorded["argv"]
    # interpolate needs no weights
    assert argv[argv.index("--engine") + 1] == "interpolate" and "--checkpoint" not in argv
    assert not os.path.exists(job.folder)


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in child is a POSIX script")
def test_batch_from_a_folder_with_a_bundle_that_stops_on_bad_input(module, tmp_path):
    """Folder inputs: the table starts empty and grows as cases finish; a batch that stops with
    exit 2 raises its one error line after recording the case it finished."""
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    logic.jobs.pythonExecutable = lambda: _fake_python(tmp_path)
    bundle = tmp_path / "atlas"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("a.nrrd", "b_crash.nrrd"):
        shutil.copyfile(image_path, inputs / name)
    job = logic.batch.start(str(tmp_path / "out"), inputFolder=str(inputs), modelKind="atlas", modelPath=str(bundle),
                            checkpoint="sam_vit_b", engine="sam")
    assert job.argv[3:5] == ["batch", str(inputs)] and "--checkpoint" not in job.argv and "--engine" not in job.argv
    table = job.details["table"]
    assert table.rows == []
    _poll_until(logic, job, lambda: not job.running)
    with pytest.raises(ValueError, match="the stand-in batch stops at b_crash"):
        logic.batch.finish(job)
    assert [(row.case, row.status) for row in table.rows] == [("a", "done")]
    assert not os.path.exists(job.folder)


# Exchange with the child: uncompressed, geometry from the node, no second image read ---------


class _FakeMatrix:
    """vtk.vtkMatrix4x4 stand-in."""

    def __init__(self):
        self.values = np.eye(4)

    def GetElement(self, row, column):
        return float(self.values[row, column])


class _FakeImageData:
    def __init__(self, dimensions):
        self._dimensions = dimensions

    def GetDimensions(self):
        return self._dimensions


class _GeometryNode(_FakeNode):
    """A volume node whose IJKToRAS and dimensions are those of ``volume`` (a SAMFewShotLib Volume)."""

    def __init__(self, name, volume):
        super().__init__(name)
        from SAMFewShotLib.slicer_support.coordinates import ijk_to_ras_matrix

        self._matrix = ijk_to_ras_matrix(volume)
        self._dims = tuple(reversed(volume.shape))

    def GetIJKToRASMatrix(self, matrix):
        matrix.values = np.array(self._matrix)

    def GetImageData(self):
        return _FakeImageData(self._dims)


def test_volume_is_exported_uncompressed(module, monkeypatch, tmp_path):
    import contextlib

    seen = []
    monkeypatch.setattr(
        sys.modules["slicer"].util,
        "exportNode",
        lambda node, path, properties: seen.append(properties) or True,
        raising=False,
    )
    logic = module.SAMFewShotLogic()
    monkeypatch.setattr(logic.scene, "temporarySceneNodes", lambda *a: contextlib.nullcontext())
    logic.scene.exportVolume(_FakeNode("CT"), str(tmp_path / "image.nrrd"))
    assert seen == [{"useCompression": 0}]


def test_geometry_comes_from_the_node_and_the_result_is_read_once(module, monkeypatch, tmp_path):
    """The child's inputs and result are checked against the node's grid: the image file is never
    read back on the GUI thread (issue 12 item 7)."""
    import SAMFewShotLib.volume_io as volume_io
    from SAMFewShotLib.volume import LabelVolume

    image_path, ball, drawn = _ball_case(tmp_path)
    image = volume_io.read_volume(image_path)
    monkeypatch.setattr(sys.modules["vtk"], "vtkMatrix4x4", _FakeMatrix, raising=False)
    logic = module.SAMFewShotLogic()
    geometry = logic.scene.volumeGeometry(_GeometryNode("CT", image))
    assert geometry.same_grid(image) and geometry.array.strides == (0, 0, 0)  # no voxel copied
    out = tmp_path / "labels.nrrd"
    logic.scene.writeLabelsLike(drawn, (), geometry, str(out))
    volume_io.write_labels(LabelVolume(image.with_array(ball.astype(np.uint8))), tmp_path / "result.nrrd")

    real_read_volume = volume_io.read_volume

    def no_image_read(path, *args, **kwargs):
        assert Path(path) != Path(image_path), "the image was read again"
        return real_read_volume(path, *args, **kwargs)

    monkeypatch.setattr(volume_io, "read_volume", no_image_read)
    result = logic.scene.readResultLabels(str(tmp_path / "result.nrrd"), geometry)
    assert np.array_equal(result.array > 0, ball)
    assert volume_io.read_labels(out).volume.same_grid(image)


def test_batch_exports_one_volume_per_step(module, tmp_path):
    """prepare() writes nothing; each step exports one volume (the GUI runs one per timer tick);
    discard() removes the folder (Cancel while exporting)."""
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, drawn)
    exported = []
    logic.scene.exportVolume = lambda volumeNode, path: (
        exported.append(volumeNode.GetName()) or shutil.copyfile(image_path, path)
    )
    bundle = tmp_path / "atlas.zip"
    bundle.write_bytes(b"not read before the child runs")
    preparation = logic.batch.prepare(
        str(tmp_path / "out"),
        volumeNodes=[_FakeNode("a"), _FakeNode("b"), _FakeNode("c")],
        modelKind="atlas",
        modelPath=str(bundle),
    )
    assert exported == [] and preparation.total == 3 and len(preparation.steps) == 3
    assert preparation.runNextStep() == "volume 'a'" and exported == ["a"]
    with pytest.raises(RuntimeError, match="2 export steps"):
        logic.batch.launch(preparation)
    preparation.discard()
    assert not os.path.exists(preparation.folder) and preparation.steps == []
