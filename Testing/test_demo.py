"""Tests of the demo: simulated annotations, the demo cases and the end-to-end run."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from SAMFewShotLib import demo_data
from SAMFewShotLib.bench import annotation_slices, simulate_annotation, slice_positions
from SAMFewShotLib.demo import run_demo
from SAMFewShotLib.demo_data import DemoCase, DemoDataError, load_demo_case, phantom_case, ras_coordinates
from SAMFewShotLib.volume import LabelVolume, Segment, Volume
from SAMFewShotLib.volume_io import read_labels, read_volume

SHAPE = (34, 20, 22)  # (z, y, x)
SPACING_XYZ = (0.8, 0.9, 2.5)
#: Small phantom for end-to-end runs (z, y, x).
SMALL_PHANTOM = (24, 40, 40)
NILEARN_FILES = demo_data.nilearn_template_files()


def label_volume(boxes: dict, shape=SHAPE) -> LabelVolume:
    """Label value v fills boxes[v], a (z, y, x) tuple of slices."""
    array = np.zeros(shape, np.uint8)
    for value, box in boxes.items():
        array[box] = value
    volume = Volume(array, spacing=SPACING_XYZ, origin=(3.0, -4.0, 5.0))
    segments = tuple(Segment(v, f"structure {v}", (0.1 * v, 0.2, 0.3)) for v in boxes)
    return LabelVolume(volume, segments)


def expected_positions(first: int, last: int, k: int) -> list[int]:
    """The documented formula, exactly, rounded half up: floor(first + (last - first)(2i + 1) / (2k) + 1/2)."""
    return sorted(math.floor(first + Fraction((last - first) * (2 * i + 1), 2 * k) + Fraction(1, 2)) for i in range(k))


# slice_positions / simulate_annotation ------------------------------------------------------------
def test_positions_of_a_known_extent():
    assert slice_positions(10, 29, 3) == [13, 20, 26]  # 13.17, 19.5 (half up), 25.83


@pytest.mark.parametrize("first, last", [(0, 0), (8, 11), (3, 9), (10, 29)])
def test_k_positions_are_k_distinct_slices(first, last):
    for k in range(1, last - first + 2):
        assert len(set(slice_positions(first, last, k))) == k


@pytest.mark.parametrize("first, last", [(0, 0), (3, 9), (10, 29), (35, 50), (1, 4)])
def test_positions_follow_the_formula(first, last):
    for k in range(1, last - first + 2):
        positions = slice_positions(first, last, k)
        assert positions == expected_positions(first, last, k)
        assert first <= positions[0] and positions[-1] <= last


def test_annotation_keeps_k_slices_of_the_reference():
    reference = label_volume({1: (slice(10, 30), slice(4, 15), slice(5, 17))})
    annotation = simulate_annotation(reference, 3)
    assert annotation.axis == 0
    assert annotation.drawn_slices(1) == [13, 20, 26]
    drawn = annotation.labels.array
    for z in range(SHAPE[0]):
        expected = reference.array[z] if z in (13, 20, 26) else 0
        np.testing.assert_array_equal(drawn[z], expected)
    assert annotation.labels.volume.same_grid(reference.volume)
    assert annotation.labels.segments == reference.segments


def test_each_label_gets_its_own_positions():
    # Label 2 spans 5..14: 6.5 -> 7, 9.5 -> 10, 12.5 -> 13 (half up); label 1 spans 10..29 -> 13, 20, 26.
    reference = label_volume(
        {1: (slice(10, 30), slice(2, 9), slice(2, 20)), 2: (slice(5, 15), slice(11, 18), slice(3, 19))}
    )
    assert annotation_slices(reference, 3) == {1: [13, 20, 26], 2: [7, 10, 13]}
    annotation = simulate_annotation(reference, 3)
    assert annotation.drawn_slices(1) == [13, 20, 26]
    assert annotation.drawn_slices(2) == [7, 10, 13]
    # Only a label's own slices carry its voxels, whole; slice 12 holds both labels in the
    # reference and is chosen for neither.
    for z in range(5, 15):
        drawn = (annotation.labels.array[z] == 2).sum()
        assert drawn == ((reference.array[z] == 2).sum() if z in (7, 10, 13) else 0)
    assert not annotation.labels.array[12].any()


@pytest.mark.parametrize("axis", [1, 2])
def test_other_axes(axis):
    box = [slice(3, 31), slice(3, 17), slice(3, 19)]
    box[axis] = slice(2, 9) if axis == 1 else slice(4, 19)
    reference = label_volume({1: tuple(box)})
    annotation = simulate_annotation(reference, 3, axis=axis)
    first, last = box[axis].start, box[axis].stop - 1
    assert annotation.axis == axis
    assert annotation.drawn_slices(1) == expected_positions(first, last, 3)
    for s in annotation.drawn_slices(1):
        np.testing.assert_array_equal(np.take(annotation.labels.array, s, axis), np.take(reference.array, s, axis))


def test_k_larger_than_the_extent_raises():
    reference = label_volume({1: (slice(10, 30), slice(4, 15), slice(5, 17))})
    simulate_annotation(reference, 20)  # one per slice is fine
    with pytest.raises(ValueError, match=r"k = 21 .*10\.\.29 \(20 slices\)"):
        simulate_annotation(reference, 21)


@pytest.mark.parametrize("k", [0, -2, 2.5])
def test_bad_k_raises(k):
    reference = label_volume({1: (slice(10, 30), slice(4, 15), slice(5, 17))})
    with pytest.raises(ValueError, match="k must be a positive integer"):
        simulate_annotation(reference, k)


def test_bad_axis_and_empty_reference_raise():
    reference = label_volume({1: (slice(10, 30), slice(4, 15), slice(5, 17))})
    with pytest.raises(ValueError, match="Axis must be 0, 1 or 2"):
        simulate_annotation(reference, 3, axis=3)
    with pytest.raises(ValueError, match="empty"):
        simulate_annotation(reference.with_array(np.zeros(SHAPE, np.uint8)), 3)


# Demo cases ------------------------------------------------------------------------------------
@pytest.mark.skipif(NILEARN_FILES is None, reason="nilearn and its MNI ICBM152 2009a template files are not installed")
def test_template_case():
    case = load_demo_case()
    assert "MNI ICBM152 2009a" in case.source and "fallback" not in case.source
    assert case.image.array.ndim == 3 and min(case.image.shape) > 50
    assert case.image.spacing == (2.0, 2.0, 2.0)
    assert case.reference.volume.same_grid(case.image)
    assert case.reference.segment(1).name == "Lateral ventricles"
    mask = case.reference.array == 1
    volume_ml = mask.sum() * 8 / 1000
    assert 5 < volume_ml < 60
    # Geometry kept through resampling and cropping: the ventricles sit where MNI puts them,
    # symmetric about the midline x = 0.
    x, y, z = ras_coordinates(case.reference.volume)
    assert abs(x[mask].mean()) < 1.0
    assert -25 < y[mask].mean() < -5 and 5 < z[mask].mean() < 25
    assert (x[mask] < 0).sum() == pytest.approx((x[mask] > 0).sum(), rel=0.1)
    # Its extent leaves room for the default k.
    assert len(annotation_slices(case.reference, 5)[1]) == 5


def test_phantom_case_is_deterministic_and_non_convex():
    case = load_demo_case(phantom=True)
    assert "phantom" in case.source
    again = phantom_case()
    np.testing.assert_array_equal(case.image.array, again.image.array)
    mask = case.reference.array == 1
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    assert len(zs) >= 20
    # The cross-section changes along z, and is not convex (a C): its convex hull is larger.
    from skimage.morphology import convex_hull_image

    hull_ratio = [convex_hull_image(mask[z]).sum() / mask[z].sum() for z in zs]
    assert min(hull_ratio) > 1.15
    first, last = mask[zs[2]], mask[zs[-3]]
    assert (first & last).sum() < 0.5 * min(first.sum(), last.sum())
    # The structure is darker than its surroundings.
    ring = np.zeros_like(mask)
    ring[zs[0] : zs[-1] + 1] = True
    assert case.image.array[mask].mean() < case.image.array[ring & ~mask].mean() - 30


def test_fallback_when_the_template_is_missing(monkeypatch):
    monkeypatch.setattr(demo_data, "nilearn_template_files", lambda: None)
    case = load_demo_case()
    assert "phantom" in case.source and "fallback" in case.source and "not installed" in case.source
    assert case.reference.label_values() == [1]


def test_fallback_when_the_structure_cannot_be_derived(monkeypatch, tmp_path):
    def fail(files, spacing_mm):
        raise DemoDataError("no CSF component")

    monkeypatch.setattr(demo_data, "nilearn_template_files", lambda: {"t1": tmp_path / "t1.nii.gz"})
    monkeypatch.setattr(demo_data, "mni_case", fail)
    case = load_demo_case()
    assert "fallback" in case.source and "no CSF component" in case.source


def test_fallback_when_a_template_file_is_unreadable(monkeypatch, tmp_path):
    files = {key: tmp_path / f"{key}.nii.gz" for key in ("t1", "wm", "gm")}
    for path in files.values():
        path.write_bytes(b"not an image")
    monkeypatch.setattr(demo_data, "nilearn_template_files", lambda: files)
    case = load_demo_case()
    assert "fallback" in case.source and "could not be used" in case.source
    assert all(path.read_bytes() == b"not an image" for path in files.values())


# run_demo ----------------------------------------------------------------------------------------
def test_run_demo_writes_everything(tmp_path):
    out = tmp_path / "new" / "demo"
    case = phantom_case(SMALL_PHANTOM)
    result = run_demo(out, k=3, case=case)
    names = {"image.nii.gz", "reference.seg.nrrd", "annotation.seg.nrrd", "interpolate.seg.nrrd",
             "register.seg.nrrd", "auto.seg.nrrd", "summary.json",
             "interpolate-qc.png", "register-qc.png", "auto-qc.png"}
    assert names == {p.name for p in out.iterdir()}  # no temporary file left either
    for engine in ("interpolate", "register", "auto"):  # the QC picture of each result
        assert Image.open(out / f"{engine}-qc.png").format == "PNG"
        assert result.files[f"{engine} qc"] == out / f"{engine}-qc.png"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engines"] == ["interpolate", "register", "auto"]
    assert summary["k"] == 3 and summary["source"] == case.source
    for engine in summary["engines"]:
        assert 0.0 <= summary["dice"][engine] <= 1.0
        assert summary["hd95"][engine] is None or summary["hd95"][engine] >= 0
        assert summary["seconds"][engine] > 0
    assert read_volume(out / "image.nii.gz").same_grid(case.image)
    annotation = read_labels(out / "annotation.seg.nrrd")
    assert annotation.segment(1).name == case.reference.segment(1).name
    assert np.count_nonzero(annotation.array.any(axis=(1, 2))) == 3
    prediction = read_labels(out / "register.seg.nrrd")
    assert prediction.volume.same_grid(case.image)
    table = result.table()
    for engine in ("interpolate", "register", "auto", "Dice", "HD95 mm", "seconds"):
        assert engine in table
    assert "Fill between slices" in table.splitlines()[-1]


def test_register_beats_interpolate_on_the_phantom(tmp_path):
    result = run_demo(tmp_path, engines=("interpolate", "register"), k=3, case=phantom_case())
    interpolate, register = result.score("interpolate"), result.score("register")
    assert register.dice > interpolate.dice + 0.05
    assert "register by +" in result.table().splitlines()[-1]


def test_run_demo_refuses_unknown_engines_before_writing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="nonsense"):
        run_demo(out, engines=("interpolate", "nonsense"), case=phantom_case(SMALL_PHANTOM))
    assert not out.exists()


def test_run_demo_never_overwrites_an_input(tmp_path):
    small = phantom_case(SMALL_PHANTOM)
    source = tmp_path / "image.nii.gz"
    source.write_bytes(b"input")
    case = DemoCase(small.image, small.reference, small.source, input_files=(source,))
    with pytest.raises(ValueError, match="input"):
        run_demo(tmp_path, engines=("interpolate",), case=case)
    assert source.read_bytes() == b"input"


def test_run_demo_k_too_large(tmp_path):
    with pytest.raises(ValueError, match="k = 500"):
        run_demo(tmp_path / "out", engines=("interpolate",), k=500, case=phantom_case(SMALL_PHANTOM))
