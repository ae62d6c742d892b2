"""Tests of the ``samfewshot`` command (cli.py), run as ``python -m SAMFewShotLib`` in a subprocess.

The contract (DESIGN.md, cli.py docstring): exit 0 on success; on bad input exit 2 with ONE line
on stderr naming the problem, nothing written, inputs untouched; 130 when cancelled.

Phantom: a bright textured ellipsoid (label 1, "ball") in a darker textured background on a small
grid with an oblique direction, annotated on three axial slices. Every file is written with
SimpleITK to a temporary folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from SAMFewShotLib.volume import LabelVolume, Segment
from SAMFewShotLib.volume_io import read_labels, read_volume, write_labels

SHAPE = (24, 32, 36)  # (z, y, x)
SPACING = (0.8, 0.9, 2.5)  # (x, y, z) mm
ORIGIN = (-10.5, 22.25, 100.0)  # mm, LPS


def rotation(degrees_x: float, degrees_z: float) -> tuple[float, ...]:
    """Row-major 3x3 rotation Rz @ Rx (an oblique, right-handed direction matrix)."""
    ax, az = math.radians(degrees_x), math.radians(degrees_z)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return tuple(float(v) for v in (rz @ rx).ravel())


DIRECTION = rotation(15.0, 20.0)
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
CENTER, RADII = (12, 16, 18), (8, 11, 12)  # (z, y, x) voxels: the ball spans z = 4..20
DRAWN = [8, 12, 16]  # axial slices drawn
TIMEOUT = 120


# Helpers -----------------------------------------------------------------------------------------
def run_cli(*args, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "SAMFewShotLib", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=cwd,
    )


def ellipsoid(center, radii, shape=SHAPE) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii)) <= 1


def render(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """Structure ~120, background ~40, both textured, Gaussian noise sd 4; float32."""
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.standard_normal(truth.shape), 1.5)
    image = 40 + 6 * texture / texture.std()
    image[truth] = 120 + 10 * (texture / texture.std())[truth]
    return (image + rng.normal(0, 4, truth.shape)).astype(np.float32)


def write_image(path: Path, array: np.ndarray, spacing=SPACING, origin=ORIGIN, direction=DIRECTION) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def draw(truth: np.ndarray, slices, axis: int = 0, value: int = 1) -> np.ndarray:
    labels = np.zeros(truth.shape, np.uint8)
    for s in slices:
        index = [slice(None)] * 3
        index[axis] = s
        labels[tuple(index)][truth[tuple(index)]] = value
    return labels


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def snapshot(*folders: Path) -> dict[str, str]:
    """{path: sha256} of every file under ``folders`` (hidden and temporary files included)."""
    hashes = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def read_sitk(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def assert_same_geometry(image: sitk.Image, reference: sitk.Image) -> None:
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-5)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> dict:
    """image.nii.gz (oblique grid), truth.nii.gz (full ball), ann.nii.gz (3 axial slices)."""
    folder = tmp_path_factory.mktemp("phantom")
    truth = ellipsoid(CENTER, RADII)
    drawn = draw(truth, DRAWN)
    return {
        "dir": folder,
        "truth": truth,
        "drawn": drawn,
        "image": write_image(folder / "image.nii.gz", render(truth)),
        "reference": write_image(folder / "truth.nii.gz", truth.astype(np.uint8)),
        "annotation": write_image(folder / "ann.nii.gz", drawn),
    }


# 1. Bad input -------------------------------------------------------------------------------------
def _bad_case(name: str, phantom: dict, work: Path) -> tuple[list, list[str]]:
    """(command-line arguments, substrings the one stderr line must hold) of bad-input case ``name``.

    Extra input files go to ``work / "in"``; the output, where the case does not say otherwise,
    is ``work / "out" / "seg.nii.gz"``.
    """
    inputs, out = work / "in", work / "out" / "seg.nii.gz"
    image, annotation, reference = phantom["image"], phantom["annotation"], phantom["reference"]
    truth = phantom["truth"]

    def propagate(img=image, ann=annotation, output=out, *extra):
        return ["propagate", img, ann, "-o", output, "--engine", "register", *extra]

    if name == "missing image":
        return propagate(inputs / "nope.nii.gz"), ["nope.nii.gz", "no such file"]
    if name == "missing annotation":
        return propagate(image, inputs / "gone.nrrd"), ["gone.nrrd", "no such file"]
    if name == "text file named .nii.gz":
        path = inputs / "notes.nii.gz"
        path.write_text("this is not an image\n")
        return propagate(path), ["notes.nii.gz", "not an image file"]
    if name == "grid mismatch":
        path = write_image(inputs / "other_grid.nii.gz", phantom["drawn"], spacing=(0.8, 0.9, 3.0))
        image_grid = read_volume(image).grid_text()
        annotation_grid = read_volume(path).grid_text()
        return propagate(image, path), ["annotation grid", annotation_grid, "image grid", image_grid]
    if name == "grid mismatch (size)":
        path = write_image(inputs / "small.nii.gz", phantom["drawn"][:, :, :30].copy())
        return propagate(image, path), ["36x32x24", "30x32x24"]
    if name == "empty annotation":
        path = write_image(inputs / "zeros.nii.gz", np.zeros(SHAPE, np.uint8))
        return propagate(image, path), ["empty"]
    if name == "labels on two axes":
        labels = draw(truth, [12], axis=0) | draw(truth, [16], axis=1)  # axial 12 + coronal-ish 16
        path = write_image(inputs / "two_axes.nii.gz", labels)
        return propagate(image, path), ["different axes"]
    if name == "non-integer annotation":
        labels = phantom["drawn"].astype(np.float32)
        labels[12, 16, 18] = 0.5
        path = write_image(inputs / "fractional.nii.gz", labels)
        return propagate(image, path), ["fractional.nii.gz", "not a label map", "0.5"]
    if name == "2D image":
        path = inputs / "flat.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(render(truth)[12]), str(path))
        return propagate(path), ["flat.nii.gz", "2D"]
    if name == "single-slice image":
        path = write_image(inputs / "one_slice.nii.gz", render(truth)[12:13].copy())
        return propagate(path), ["one_slice.nii.gz", "single slice"]
    if name == "4D image":
        path = inputs / "series.nii.gz"
        frame = sitk.GetImageFromArray(render(truth))
        sitk.WriteImage(sitk.JoinSeries([frame, frame]), str(path))
        return propagate(path), ["series.nii.gz", "4D"]
    if name == "NaN and inf voxels":
        array = render(truth)
        array[3, 4, 5] = np.nan
        array[20, 10, 30] = np.inf
        # NIfTI: SimpleITK's reader turns NaN/inf into 0, volume_io checks the file's data itself.
        path = write_image(inputs / "nan.nii.gz", array)
        return propagate(path), ["nan.nii.gz", "non-finite", "1 NaN", "1 inf"]
    if name == "output folder missing":
        return propagate(image, annotation, work / "missing" / "seg.nii.gz"), [str(work / "missing")]
    if name == "output folder is a file":
        (work / "a_file").write_text("x")
        return propagate(image, annotation, work / "a_file" / "seg.nii.gz"), [str(work / "a_file"), "not a folder"]
    if name == "output is a folder":
        (work / "out" / "dir.nii.gz").mkdir()
        return propagate(image, annotation, work / "out" / "dir.nii.gz"), ["dir.nii.gz", "folder"]
    if name == "output extension":
        return propagate(image, annotation, work / "out" / "seg.png"), ["seg.png", "extension"]
    if name == "output is the image":
        return propagate(image, annotation, image), [str(image), "input"]
    if name == "output is the annotation":
        return propagate(image, annotation, annotation), [str(annotation), "input"]
    if name == "output is the image via ..":
        spelled = phantom["dir"] / "sub" / ".." / image.name
        (phantom["dir"] / "sub").mkdir(exist_ok=True)
        return propagate(image, annotation, spelled), [str(spelled), "input"]
    if name == "output is the annotation via a relative path":
        (work / "cwd").mkdir()
        spelled = os.path.relpath(annotation, work / "cwd")  # ../../phantom0/ann.nii.gz
        return propagate(image, annotation, spelled), [spelled, "input"]
    if name == "report is the annotation":
        return propagate(image, annotation, out, "--report", annotation), [str(annotation), "input"]
    if name == "report is the output":
        return propagate(image, annotation, out, "--report", out), [str(out), "input"]
    if name == "unknown engine":
        return ["propagate", image, annotation, "-o", out, "--engine", "bogus"], ["'bogus'"]
    if name == "unknown registrar":
        return ["propagate", image, annotation, "-o", out, "--engine", "register:nope"], ["'register:nope'"]
    if name == "SAM engine without a checkpoint":
        return ["propagate", image, annotation, "-o", out, "--engine", "sam"], ["--checkpoint"]
    if name == "few-shot engine without a checkpoint":
        command = ["propagate", image, annotation, "-o", out, "--engine", "fewshot"]
        return command, ["The fewshot engine", "--checkpoint"]
    if name == "checkpoint without a SAM engine":
        return [*propagate(), "--engine", "register", "--checkpoint", "sam_vit_b.pth"], ["--checkpoint", "'register'"]
    if name == "unknown axis":
        return [*propagate(), "--axis", "oblique"], ["oblique"]
    if name == "missing -o":
        return ["propagate", image, annotation], ["-o/--output"]
    if name == "empty-slices text":
        return [*propagate(), "--empty-slices", "1:2,x"], ["'x'"]
    if name == "empty-slices label text":
        return [*propagate(), "--empty-slices", "one:2"], ["'one'"]
    if name == "empty-slices on a drawn slice":
        return [*propagate(), "--empty-slices", "12"], ["Slice 12", "label 1"]
    if name == "empty-slices outside the volume":
        return [*propagate(), "--empty-slices", "99"], ["99"]
    if name == "empty-slices for an absent label":
        return [*propagate(), "--empty-slices", "5:2"], ["label 5"]
    if name == "bench k larger than the extent":
        return (
            ["bench", image, reference, "--labels", "1=ball", "--k", "1,40", "--engines", "interpolate",
             "--json", work / "out" / "bench.json"],
            ["ball", "k = 40", "4..20", "17 slices"],
        )
    if name == "bench unknown engine":
        return (
            ["bench", image, reference, "--labels", "1", "--k", "1", "--engines", "interpolate,bogus",
             "--json", work / "out" / "bench.json"],
            ["'bogus'"],
        )
    if name == "bench absent label":
        return ["bench", image, reference, "--labels", "7", "--k", "1", "--engines", "register"], ["Label 7"]
    if name == "bench bad k":
        return ["bench", image, reference, "--k", "1,three", "--engines", "register"], ["'three'"]
    if name == "demo output is a file":
        (work / "out" / "taken").write_text("mine")
        return ["demo", "-o", work / "out" / "taken", "--engines", "interpolate"], ["taken", "not a folder"]
    raise AssertionError(name)


BAD_CASES = [
    "missing image",
    "missing annotation",
    "text file named .nii.gz",
    "grid mismatch",
    "grid mismatch (size)",
    "empty annotation",
    "labels on two axes",
    "non-integer annotation",
    "2D image",
    "single-slice image",
    "4D image",
    "NaN and inf voxels",
    "output folder missing",
    "output folder is a file",
    "output is a folder",
    "output extension",
    "output is the image",
    "output is the annotation",
    "output is the image via ..",
    "output is the annotation via a relative path",
    "report is the annotation",
    "report is the output",
    "unknown engine",
    "unknown registrar",
    "checkpoint without a SAM engine",
    "SAM engine without a checkpoint",
    "few-shot engine without a checkpoint",
    "unknown axis",
    "missing -o",
    "empty-slices text",
    "empty-slices label text",
    "empty-slices on a drawn slice",
    "empty-slices outside the volume",
    "empty-slices for an absent label",
    "bench k larger than the extent",
    "bench unknown engine",
    "bench absent label",
    "bench bad k",
    "demo output is a file",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, phantom, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    args, expected = _bad_case(case, phantom, tmp_path)
    before = snapshot(phantom["dir"], tmp_path)
    result = run_cli(*args, cwd=tmp_path / "cwd" if (tmp_path / "cwd").is_dir() else None)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "error" in lines[0] and "Traceback" not in lines[0]
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert result.stdout == ""
    # Nothing written anywhere (no output, no report, no temporary file), inputs byte-identical.
    assert snapshot(phantom["dir"], tmp_path) == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_folder_not_writable(phantom, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        result = run_cli("propagate", phantom["image"], phantom["annotation"], "-o", folder / "seg.nii.gz")
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
        assert "not writable" in result.stderr and str(folder) in result.stderr
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_report_is_not_written_when_the_run_fails(phantom, tmp_path):
    report = tmp_path / "report.json"
    result = run_cli(
        "propagate", phantom["image"], phantom["annotation"], "-o", tmp_path / "seg.nii.gz",
        "--empty-slices", "8", "--report", report,
    )
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []


# 2. propagate: happy paths ------------------------------------------------------------------------
def _progress_lines(stdout: str) -> list[dict]:
    """Every stdout line parsed as a progress object; fails on any other line."""
    records = []
    for line in stdout.splitlines():
        record = json.loads(line)
        assert set(record) == {"stage", "done", "total"}, line
        assert isinstance(record["stage"], str) and record["stage"]
        assert type(record["done"]) is int and type(record["total"]) is int, line
        assert 0 <= record["done"] <= record["total"], line
        records.append(record)
    assert records, "no progress line"
    return records


@pytest.mark.parametrize("engine, min_dice", [("interpolate", 0.6), ("register", 0.85), ("auto", 0.85)])
def test_propagate(engine, min_dice, phantom, tmp_path):
    out, report = tmp_path / "seg.nii.gz", tmp_path / "report.json"
    before = snapshot(phantom["dir"])
    result = run_cli(
        "propagate", phantom["image"], phantom["annotation"], "-o", out, "--engine", engine,
        "--progress", "json", "--report", report,
    )
    assert result.returncode == 0, result.stderr
    stages = {r["stage"] for r in _progress_lines(result.stdout)}
    assert any(stage.startswith(engine) for stage in stages), stages
    assert snapshot(phantom["dir"]) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "seg.nii.gz"]

    labels, written = read_sitk(out)
    _, image = read_sitk(phantom["image"])
    assert_same_geometry(written, image)
    assert set(np.unique(labels)) == {0, 1}
    for z in DRAWN:  # annotated slices exactly as drawn
        np.testing.assert_array_equal(labels[z], phantom["drawn"][z])
    assert dice(labels == 1, phantom["truth"]) > min_dice
    if engine == "interpolate":  # fills between the outermost drawn slices, nothing outside
        assert np.flatnonzero((labels == 1).any(axis=(1, 2))).tolist() == list(range(DRAWN[0], DRAWN[-1] + 1))

    data = json.loads(report.read_text())
    assert data["engine"] == engine and data["axis"] == 0
    assert data["annotated_slices"] == {"1": DRAWN}
    seconds = data["seconds"]
    assert {"read", "write", "total"} <= set(seconds)
    assert all(isinstance(v, float) and v >= 0 for v in seconds.values())
    assert seconds["total"] >= seconds["read"] + seconds["write"] and seconds["total"] > 0
    assert isinstance(data["counters"], dict) and data["counters"]
    if engine == "auto":
        assert 0.0 <= data["expected_dice"]["1"] <= 1.0
    assert len(data["slice_confidence"]["1"]) == SHAPE[0]


def test_seg_nrrd_keeps_segment_names_and_colours(phantom, tmp_path):
    image = read_volume(phantom["image"])
    annotation = tmp_path / "annotation.seg.nrrd"
    write_labels(LabelVolume(image.with_array(phantom["drawn"]), (Segment(1, "ball", (0.9, 0.2, 0.1)),)), annotation)
    out = tmp_path / "result.seg.nrrd"
    result = run_cli("propagate", phantom["image"], annotation, "-o", out, "--engine", "register", "--progress", "none")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    labels = read_labels(out)
    assert labels.volume.same_grid(image, tolerance=1e-5)
    segment = labels.segment(1)
    assert segment.name == "ball"
    np.testing.assert_allclose(segment.color, (0.9, 0.2, 0.1), atol=1e-4)
    for z in DRAWN:
        np.testing.assert_array_equal(labels.array[z], phantom["drawn"][z])
    assert dice(labels.array == 1, phantom["truth"]) > 0.85


def test_coronal_axis(tmp_path):
    # Identity direction: numpy axis 1 (index y, LPS P) holds the coronal slices.
    truth = ellipsoid((12, 16, 18), (9, 10, 12))
    slices = [10, 16, 22]
    image = write_image(tmp_path / "image.nrrd", render(truth, seed=3), direction=IDENTITY)
    annotation = write_image(tmp_path / "ann.nrrd", draw(truth, slices, axis=1), direction=IDENTITY)
    out, report = tmp_path / "seg.nrrd", tmp_path / "report.json"
    result = run_cli(
        "propagate", image, annotation, "-o", out, "--axis", "coronal", "--engine", "register",
        "--progress", "none", "--report", report,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["axis"] == 1 and data["annotated_slices"] == {"1": slices}
    assert len(data["slice_confidence"]["1"]) == SHAPE[1]
    labels, written = read_sitk(out)
    assert_same_geometry(written, sitk.ReadImage(str(image)))
    for y in slices:
        np.testing.assert_array_equal(labels[:, y], truth[:, y].astype(labels.dtype))
    assert dice(labels == 1, truth) > 0.85


@pytest.mark.parametrize("engine", ["register", "auto"])
def test_empty_slice_stops_the_extrapolation(engine, phantom, tmp_path):
    # The ball reaches z = 20 and register extrapolates beyond slice 16; slice 18 is declared empty.
    free = run_cli("propagate", phantom["image"], phantom["annotation"], "-o", tmp_path / "free.nii.gz",
                   "--engine", engine, "--progress", "none")
    assert free.returncode == 0, free.stderr
    assert (read_sitk(tmp_path / "free.nii.gz")[0][18:] == 1).any()  # the test is not vacuous
    out = tmp_path / "seg.nii.gz"
    result = run_cli(
        "propagate", phantom["image"], phantom["annotation"], "-o", out, "--engine", engine,
        "--empty-slices", "1:18", "--progress", "none",
    )
    assert result.returncode == 0, result.stderr
    labels = read_sitk(out)[0]
    assert not (labels[18:] == 1).any()
    assert (labels[17] == 1).any() or engine == "auto"  # the structure continues up to the stop
    for z in DRAWN:
        np.testing.assert_array_equal(labels[z], phantom["drawn"][z])


# 3. Immune to the contour-interpolation library's crash at exit -----------------------------------
def test_interpolate_ten_runs_in_a_row_all_succeed_identically(phantom, tmp_path):
    """itk-morphologicalcontourinterpolation 2.1.2 can abort with heap corruption
    ("malloc_consolidate") at interpreter exit after running its filter; the CLI runs the filter
    in a child process, so every run exits 0 with the same output. Also: --progress none prints
    nothing on stdout."""
    from concurrent.futures import ThreadPoolExecutor

    def one_run(run: int) -> str:
        out = tmp_path / f"seg_{run}.nii.gz"
        result = run_cli(
            "propagate", phantom["image"], phantom["annotation"], "-o", out, "--engine", "interpolate",
            "--progress", "none",
        )
        assert result.returncode == 0, f"run {run}: exit {result.returncode}: {result.stderr}"
        assert result.stdout == ""
        return hashlib.sha256(out.read_bytes()).hexdigest()

    with ThreadPoolExecutor(max_workers=2) as pool:  # two CLI processes at a time (2 cores)
        digests = list(pool.map(one_run, range(10)))
    assert len(digests) == 10 and len(set(digests)) == 1
    labels = read_sitk(tmp_path / "seg_0.nii.gz")[0]
    assert all((labels[z] == 1).any() for z in range(DRAWN[0], DRAWN[-1] + 1))  # the filter did fill


# 4. Cancellation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cancel_exits_130_and_writes_nothing(signum, tmp_path):
    shape = (64, 96, 96)
    truth = ellipsoid((32, 48, 48), (26, 36, 38), shape)
    inputs = tmp_path / "in"
    inputs.mkdir()
    image = write_image(inputs / "image.nii.gz", render(truth, seed=1))
    annotation = write_image(inputs / "ann.nii.gz", draw(truth, [16, 32, 48]))
    before = snapshot(inputs)
    out_dir, temp_dir = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    temp_dir.mkdir()
    env = dict(os.environ, TMPDIR=str(temp_dir))
    process = subprocess.Popen(
        [sys.executable, "-m", "SAMFewShotLib", "propagate", str(image), str(annotation),
         "-o", str(out_dir / "seg.nii.gz"), "--engine", "auto", "--progress", "json",
         "--report", str(out_dir / "report.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = process.stdout.readline()
        assert json.loads(first)["stage"]  # the engine has started
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "cancelled" in stderr and "Traceback" not in stderr
    _progress_lines(first + stdout)
    assert list(out_dir.iterdir()) == []  # no output, no report, no temporary file
    assert list(temp_dir.iterdir()) == []  # the interpolation child's job folder is gone
    assert snapshot(inputs) == before


# 5. bench and demo --------------------------------------------------------------------------------
def test_bench(phantom, tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli(
        "bench", phantom["image"], phantom["reference"], "--labels", "1=ball", "--k", "1,3",
        "--engines", "interpolate,register", "--json", out, "--progress", "none",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("|"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[:3] == ["engine", "k", "ball"] and "mean Dice" in cells
    rows = [line for line in lines if line.startswith("| interpolate") or line.startswith("| register")]
    assert len(rows) == 4

    data = json.loads(out.read_text())
    assert data["image"] == str(phantom["image"]) and data["reference"] == str(phantom["reference"])
    records = data["records"]
    assert {(r["engine"], r["k"]) for r in records} == {(e, k) for e in ("interpolate", "register") for k in (1, 3)}
    for record in records:
        assert record["label"] == 1 and record["name"] == "ball"
        assert 0.0 <= record["dice"] <= 1.0 and record["seconds"] > 0
        assert len(record["slices"]) == record["k"]
    assert {(r["engine"], r["k"]) for r in data["summary"]} == {(r["engine"], r["k"]) for r in records}
    for row in data["summary"]:
        assert 0.0 <= row["mean_dice"] <= 1.0 and row["dice"].keys() == {"ball"}
    register_3 = next(r for r in records if r["engine"] == "register" and r["k"] == 3)
    assert register_3["dice"] > 0.85


def test_demo(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "-o", out, "--engines", "interpolate,register", "--k", "3", "--progress", "none")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engines"] == ["interpolate", "register"] and summary["k"] == 3
    for engine in summary["engines"]:
        assert 0.0 <= summary["dice"][engine] <= 1.0
        assert (out / f"{engine}.seg.nrrd").is_file()
    assert str(out.resolve()) in result.stdout
