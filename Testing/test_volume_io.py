"""Tests of SAMFewShotLib.volume_io: readers, writers and their errors.

SimpleITK is the geometry reference: arrays are numpy (z, y, x), geometry ITK (x, y, z), LPS.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from SAMFewShotLib import volume_io
from SAMFewShotLib.volume import LabelVolume, Segment, Volume
from SAMFewShotLib.volume_io import (
    check_writable,
    read_labels,
    read_volume,
    same_file,
    write_labels,
    write_volume,
)

TOL = 1e-5
SHAPE = (5, 6, 7)  # (z, y, x)
ANISOTROPIC = (0.7, 0.9, 3.0)
ORIGIN = (-12.5, 30.25, 101.75)
ABDOMEN = Path("/work/shared/data/abdomen_ct")


def rotation(axis, angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


#: name -> (spacing, direction matrix); columns are the LPS directions of the index axes x, y, z.
GEOMETRIES = {
    "identity": ((1.0, 1.0, 1.0), np.eye(3)),
    "anisotropic": (ANISOTROPIC, np.eye(3)),
    "oblique": (ANISOTROPIC, rotation((1.0, 2.0, 3.0), 0.5)),
    "flip_xy": (ANISOTROPIC, np.diag([-1.0, -1.0, 1.0])),
    "flip_z_left_handed": (ANISOTROPIC, np.diag([1.0, 1.0, -1.0])),
    "permutation_negative": (ANISOTROPIC, np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])),
    "permutation_left_handed": (ANISOTROPIC, np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])),
}


def make_labels(geometry: str, segments: tuple[Segment, ...] = ()) -> LabelVolume:
    spacing, direction = GEOMETRIES[geometry]
    rng = np.random.default_rng(0)
    array = rng.integers(0, 4, SHAPE).astype(np.uint8)
    volume = Volume(array, spacing=spacing, origin=ORIGIN, direction=tuple(direction.ravel()))
    return LabelVolume(volume, segments)


def make_image(geometry: str = "oblique", dtype=np.float32) -> Volume:
    spacing, direction = GEOMETRIES[geometry]
    rng = np.random.default_rng(1)
    array = (rng.normal(size=SHAPE) * 100).astype(dtype)
    return Volume(array, spacing=spacing, origin=ORIGIN, direction=tuple(direction.ravel()))


def assert_same_geometry(a: Volume, b: Volume) -> None:
    np.testing.assert_allclose(a.spacing, b.spacing, atol=TOL, rtol=0)
    np.testing.assert_allclose(a.origin, b.origin, atol=TOL, rtol=0)
    np.testing.assert_allclose(a.direction, b.direction, atol=TOL, rtol=0)


def write_sitk(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


# Round trips -------------------------------------------------------------------------------------
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".nrrd", ".mha", ".seg.nrrd"])
def test_label_round_trip_keeps_values_and_geometry(tmp_path, ext, geometry):
    labels = make_labels(geometry)
    path = tmp_path / f"labels{ext}"
    write_labels(labels, path)
    back = read_labels(path)
    np.testing.assert_array_equal(back.array, labels.array)
    assert_same_geometry(back.volume, labels.volume)


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha"])
def test_volume_round_trip_keeps_values_dtype_and_geometry(tmp_path, ext, geometry):
    image = make_image(geometry)
    path = tmp_path / f"image{ext}"
    write_volume(image, path)
    back = read_volume(path)
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, image.array)
    assert_same_geometry(back, image)


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float64])
def test_read_volume_keeps_dtype(tmp_path, dtype):
    image = make_image("anisotropic", dtype)
    write_volume(image, tmp_path / "image.nrrd")
    assert read_volume(tmp_path / "image.nrrd").array.dtype == dtype


def test_write_volume_writes_bool_as_uint8(tmp_path):
    image = make_image("identity")
    write_volume(image.with_array(image.array > 0), tmp_path / "mask.nii.gz")
    back = read_volume(tmp_path / "mask.nii.gz")
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, image.array > 0)


def test_seg_nrrd_round_trip_keeps_segment_table(tmp_path):
    segments = (
        Segment(1, "liver", (0.8, 0.2, 0.1)),
        Segment(2, "spleen", (0.1, 0.5, 0.9)),
        Segment(3, "left kidney", (0.3, 0.9, 0.3)),
    )
    labels = make_labels("oblique", segments)
    write_labels(labels, tmp_path / "out.seg.nrrd")
    back = read_labels(tmp_path / "out.seg.nrrd")
    assert [(s.value, s.name) for s in back.segments] == [(1, "liver"), (2, "spleen"), (3, "left kidney")]
    for seg, ref in zip(back.segments, segments):
        np.testing.assert_allclose(seg.color, ref.color, atol=1e-6)


LIVER_TERMINOLOGY = (
    "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
    "~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^"
)


def test_seg_nrrd_round_trip_keeps_terminology(tmp_path):
    segments = (Segment(1, "liver", (0.8, 0.2, 0.1), LIVER_TERMINOLOGY), Segment(2, "other"))
    write_labels(make_labels("oblique", segments), tmp_path / "out.seg.nrrd")
    back = read_labels(tmp_path / "out.seg.nrrd")
    assert back.segment(1).terminology == LIVER_TERMINOLOGY
    assert back.segment(2).terminology is None


def test_seg_nrrd_keeps_sparse_label_values(tmp_path):
    labels = make_labels("identity")
    array = np.where(labels.array == 2, 7, np.where(labels.array == 3, 200, labels.array)).astype(np.uint8)
    segments = (Segment(1, "a", (1.0, 0.0, 0.0)), Segment(7, "b", (0.0, 1.0, 0.0)), Segment(200, "c", (0.0, 0.0, 1.0)))
    write_labels(labels.with_array(array, segments), tmp_path / "sparse.seg.nrrd")
    back = read_labels(tmp_path / "sparse.seg.nrrd")
    np.testing.assert_array_equal(back.array, array)
    assert [s.value for s in back.segments] == [1, 7, 200]


def test_seg_nrrd_gives_names_and_colours_to_undeclared_labels(tmp_path):
    labels = make_labels("identity", (Segment(2, "named"),))
    write_labels(labels, tmp_path / "out.seg.nrrd")
    back = read_labels(tmp_path / "out.seg.nrrd")
    assert [(s.value, s.name) for s in back.segments] == [(1, "Segment_1"), (2, "named"), (3, "Segment_3")]
    assert all(s.color is not None for s in back.segments)


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_seg_nrrd_geometry_agrees_with_simpleitk(tmp_path, geometry):
    """The .seg.nrrd we write is read by SimpleITK with the same array and geometry."""
    labels = make_labels(geometry)
    write_labels(labels, tmp_path / "out.seg.nrrd")
    image = sitk.ReadImage(str(tmp_path / "out.seg.nrrd"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), labels.array)
    assert_same_geometry(Volume.from_sitk(image), labels.volume)


def test_seg_nrrd_from_slicerio_in_ras_space(tmp_path):
    """A segmentation stored in RAS space with flipped axes is converted to LPS."""
    ijk = np.zeros((4, 3, 2), np.uint8)  # pynrrd Fortran order: (i, j, k)
    ijk[1, 2, 0] = 1
    header = {
        "space": "right-anterior-superior",
        "space directions": np.array([[-0.5, 0, 0], [0, 2.0, 0], [0, 0, 3.0]]),  # rows = axes i, j, k
        "space origin": np.array([10.0, 20.0, 30.0]),
        "kinds": ["domain", "domain", "domain"],
        "Segment0_ID": "Segment_1",
        "Segment0_Name": "tumour",
        "Segment0_LabelValue": "1",
        "Segment0_Layer": "0",
        "Segment0_Color": "1 0 0",
    }
    nrrd.write(str(tmp_path / "ras.seg.nrrd"), ijk, header)
    back = read_labels(tmp_path / "ras.seg.nrrd")
    assert back.array.shape == (2, 3, 4)
    assert back.array[0, 2, 1] == 1 and back.array.sum() == 1
    np.testing.assert_allclose(back.volume.spacing, (0.5, 2.0, 3.0))
    np.testing.assert_allclose(back.volume.origin, (-10.0, -20.0, 30.0))
    np.testing.assert_allclose(back.volume.direction_matrix, np.diag([1.0, -1.0, 1.0]))
    assert back.segments == (Segment(1, "tumour", (1.0, 0.0, 0.0)),)


def test_nrrd_with_segment_fields_is_read_as_segmentation(tmp_path):
    labels = make_labels("identity", (Segment(1, "a", (1.0, 0.0, 0.0)),))
    write_labels(labels, tmp_path / "out.seg.nrrd")
    os.rename(tmp_path / "out.seg.nrrd", tmp_path / "renamed.nrrd")
    assert read_labels(tmp_path / "renamed.nrrd").segments[0].name == "a"


def _layered_segmentation(tmp_path: Path, overlap: bool, same_value: bool) -> Path:
    seg = slicerio.create_segmentation((7, 6, 5), np.diag([0.7, 0.9, 3.0, 1.0]))
    first = np.zeros((7, 6, 5), bool)
    first[1:3, 1:3, 1:3] = True
    second = np.zeros((7, 6, 5), bool)
    second[2:5, 2:5, 2:4] = True if overlap else False
    if not overlap:
        second[4:6, 4:6, 3:5] = True
    voxels = np.zeros((2, 7, 6, 5), np.uint8)
    voxels[0][first] = 1
    voxels[1][second] = 1 if same_value else 2
    seg["voxels"] = voxels
    seg["segments"] = [
        {"id": "a", "name": "first", "color": [1, 0, 0], "labelValue": 1, "layer": 0},
        {"id": "b", "name": "second", "color": [0, 1, 0], "labelValue": 1 if same_value else 2, "layer": 1},
    ]
    path = tmp_path / "layers.seg.nrrd"
    slicerio.write_segmentation(str(path), seg)
    return path


@pytest.mark.parametrize("same_value", [False, True])
def test_seg_nrrd_layers_without_overlap_are_flattened(tmp_path, same_value):
    back = read_labels(_layered_segmentation(tmp_path, overlap=False, same_value=same_value))
    assert [(s.value, s.name) for s in back.segments] == [(1, "first"), (2, "second")]
    assert back.array.shape == (5, 6, 7)
    assert int((back.array == 1).sum()) == 8 and int((back.array == 2).sum()) == 8


def test_seg_nrrd_overlapping_segments_are_rejected(tmp_path):
    path = _layered_segmentation(tmp_path, overlap=True, same_value=False)
    with pytest.raises(ValueError, match="overlap") as info:
        read_labels(path)
    assert str(path) in str(info.value) and "'first'" in str(info.value)


# DICOM -------------------------------------------------------------------------------------------
def write_dicom_series(folder: Path, volume: Volume, series_uid: str) -> None:
    """Write an int16 volume as a CT DICOM series, one file per z slice (SimpleITK example)."""
    image = volume.to_sitk()
    d = volume.direction
    orientation = "\\".join(f"{v:.10g}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(volume.shape[0]):
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        slice_image = image[:, :, k]
        tags = {
            "0008|0060": "CT",
            "0020|000d": series_uid + ".0",
            "0020|000e": series_uid,
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|0037": orientation,
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0013": str(k + 1),
            "0028|0030": f"{volume.spacing[1]:g}\\{volume.spacing[0]:g}",  # row spacing (y) \ column spacing (x)
            "0018|0050": f"{volume.spacing[2]:g}",
        }
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series_uid.rsplit('.', 1)[-1]}_{k:03d}.dcm"))
        writer.Execute(slice_image)


def ct_volume(geometry: str, nz: int = SHAPE[0]) -> Volume:
    spacing, direction = GEOMETRIES[geometry]
    rng = np.random.default_rng(2)
    array = rng.integers(-1000, 1500, (nz,) + SHAPE[1:]).astype(np.int16)
    return Volume(array, spacing=spacing, origin=ORIGIN, direction=tuple(direction.ravel()))


@pytest.mark.parametrize("geometry", ["anisotropic", "oblique"])
def test_dicom_series_folder_is_read(tmp_path, geometry):
    volume = ct_volume(geometry)
    write_dicom_series(tmp_path, volume, "1.2.826.0.1.3680043.2.1125.7.1")
    back = read_volume(tmp_path)
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, volume.array)
    assert_same_geometry(back, volume)


def test_dicom_folder_with_several_series_reads_the_largest(tmp_path, caplog):
    small, large = ct_volume("anisotropic", nz=3), ct_volume("anisotropic", nz=5)
    write_dicom_series(tmp_path, small, "1.2.826.0.1.3680043.2.1125.7.2")
    write_dicom_series(tmp_path, large, "1.2.826.0.1.3680043.2.1125.7.3")
    with caplog.at_level(logging.WARNING, logger="SAMFewShotLib.volume_io"):
        back = read_volume(tmp_path)
    np.testing.assert_array_equal(back.array, large.array)
    assert "1.2.826.0.1.3680043.2.1125.7.3" in caplog.text and "2 DICOM series" in caplog.text


def test_folder_without_dicom_is_rejected(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no DICOM series") as info:
        read_volume(tmp_path)
    assert str(tmp_path) in str(info.value)


# Bad input ---------------------------------------------------------------------------------------
def _assert_one_line_naming(error: pytest.ExceptionInfo, path: Path) -> None:
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message


def test_missing_file_is_rejected(tmp_path):
    path = tmp_path / "missing.nii.gz"
    with pytest.raises(ValueError, match="no such file") as info:
        read_volume(path)
    _assert_one_line_naming(info, path)


def test_missing_label_file_is_rejected(tmp_path):
    path = tmp_path / "missing.seg.nrrd"
    with pytest.raises(ValueError, match="no such file") as info:
        read_labels(path)
    _assert_one_line_naming(info, path)


def test_non_image_file_is_rejected(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="not an image file") as info:
        read_volume(path)
    _assert_one_line_naming(info, path)


def test_corrupt_image_file_is_rejected(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError) as info:
        read_volume(path)
    _assert_one_line_naming(info, path)


def test_corrupt_seg_nrrd_is_rejected(tmp_path):
    path = tmp_path / "broken.seg.nrrd"
    path.write_text("NRRD0004\ngarbage\n")
    with pytest.raises(ValueError, match="cannot read the segmentation") as info:
        read_labels(path)
    _assert_one_line_naming(info, path)


def test_2d_image_is_rejected(tmp_path):
    path = write_sitk(sitk.GetImageFromArray(np.zeros((6, 7), np.uint8)), tmp_path / "slice.nrrd")
    with pytest.raises(ValueError, match="2D image") as info:
        read_volume(path)
    _assert_one_line_naming(info, path)


def test_single_slice_volume_is_rejected(tmp_path):
    path = write_sitk(sitk.GetImageFromArray(np.zeros((1, 6, 7), np.uint8)), tmp_path / "one.nrrd")
    with pytest.raises(ValueError, match="single slice") as info:
        read_volume(path)
    _assert_one_line_naming(info, path)


def test_4d_image_is_rejected(tmp_path):
    frames = [sitk.GetImageFromArray(np.zeros(SHAPE, np.float32)) for _ in range(2)]
    path = write_sitk(sitk.JoinSeries(frames), tmp_path / "series.nii.gz")
    with pytest.raises(ValueError, match="4D image") as info:
        read_volume(path)
    _assert_one_line_naming(info, path)


def test_multi_component_image_is_rejected(tmp_path):
    image = sitk.GetImageFromArray(np.zeros(SHAPE + (3,), np.uint8), isVector=True)
    path = write_sitk(image, tmp_path / "rgb.nrrd")
    with pytest.raises(ValueError, match="3 components") as info:
        read_volume(path)
    _assert_one_line_naming(info, path)


def test_nan_and_inf_voxels_are_rejected_with_their_count(tmp_path):
    array = np.zeros(SHAPE, np.float32)
    array[0, 0, :2] = np.nan
    array[1, 1, 1] = np.inf
    path = write_sitk(sitk.GetImageFromArray(array), tmp_path / "nan.nrrd")
    with pytest.raises(ValueError, match=r"3 non-finite voxels \(2 NaN, 1 inf\)") as info:
        read_volume(path)
    _assert_one_line_naming(info, path)


def test_nan_and_inf_voxels_of_a_nifti_file_are_rejected(tmp_path):
    """SimpleITK's NIfTI reader turns NaN/inf into 0; the file's own data are checked."""
    import nibabel

    array = np.zeros((4, 5, 6), np.float32)
    array[1, 2, 3], array[0, 0, 0] = np.nan, -np.inf
    path = tmp_path / "nan.nii.gz"
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), str(path))
    with pytest.raises(ValueError, match=r"2 non-finite voxels \(1 NaN, 1 inf\)") as info:
        read_volume(path)
    _assert_one_line_naming(info, path)


# Label conversion --------------------------------------------------------------------------------
def test_integer_valued_float_labels_become_smallest_unsigned(tmp_path):
    array = np.zeros(SHAPE, np.float32)
    array[0, 0, 0], array[1, 1, 1] = 3.0, 300.0
    path = write_sitk(sitk.GetImageFromArray(array), tmp_path / "float_labels.nii.gz")
    labels = read_labels(path)
    assert labels.array.dtype == np.uint16
    np.testing.assert_array_equal(labels.array, array.astype(np.uint16))


def test_signed_labels_become_unsigned(tmp_path):
    array = np.zeros(SHAPE, np.int16)
    array[2, 2, 2] = 5
    labels = read_labels(write_sitk(sitk.GetImageFromArray(array), tmp_path / "signed.nrrd"))
    assert labels.array.dtype == np.uint8 and labels.label_values() == [5]


def test_unsigned_labels_keep_their_dtype(tmp_path):
    array = np.zeros(SHAPE, np.uint16)
    array[2, 2, 2] = 5
    labels = read_labels(write_sitk(sitk.GetImageFromArray(array), tmp_path / "u16.nrrd"))
    assert labels.array.dtype == np.uint16


def test_non_integer_labels_are_rejected(tmp_path):
    array = np.zeros(SHAPE, np.float32)
    array[0, 0, 0] = 0.5
    path = write_sitk(sitk.GetImageFromArray(array), tmp_path / "prob.nii.gz")
    with pytest.raises(ValueError, match="non-integer values such as 0.5") as info:
        read_labels(path)
    _assert_one_line_naming(info, path)


def test_negative_labels_are_rejected(tmp_path):
    array = np.zeros(SHAPE, np.int16)
    array[0, 0, 0] = -3
    path = write_sitk(sitk.GetImageFromArray(array), tmp_path / "neg.nrrd")
    with pytest.raises(ValueError, match="negative values .smallest -3") as info:
        read_labels(path)
    _assert_one_line_naming(info, path)


# Writing: checks and atomicity ---------------------------------------------------------------------
def test_check_writable_returns_the_path(tmp_path):
    assert check_writable(tmp_path / "out.seg.nrrd") == tmp_path / "out.seg.nrrd"


def test_unknown_extension_is_rejected_before_writing(tmp_path):
    with pytest.raises(ValueError, match="unknown output extension") as info:
        write_labels(make_labels("identity"), tmp_path / "out.png")
    assert str(tmp_path / "out.png") in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_seg_nrrd_is_not_a_volume_extension(tmp_path):
    with pytest.raises(ValueError, match="unknown output extension"):
        write_volume(make_image(), tmp_path / "image.seg.nrrd")


def test_missing_output_folder_is_rejected_before_writing(tmp_path):
    path = tmp_path / "missing" / "out.nii.gz"
    with pytest.raises(ValueError, match="does not exist") as info:
        write_labels(make_labels("identity"), path)
    assert str(path.parent) in str(info.value)
    assert not path.parent.exists()


def test_output_folder_that_is_a_file_is_rejected(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        check_writable(tmp_path / "file" / "out.nii.gz")


def test_output_path_that_is_a_folder_is_rejected(tmp_path):
    (tmp_path / "out.nii.gz").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        check_writable(tmp_path / "out.nii.gz")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_folder_is_rejected(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="not writable"):
            check_writable(folder / "out.nii.gz")
    finally:
        folder.chmod(0o755)


def test_folder_without_write_permission_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(volume_io.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(ValueError, match="not writable") as info:
        write_labels(make_labels("identity"), tmp_path / "out.nii.gz")
    assert str(tmp_path) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_nii_gz_output_is_compressed(tmp_path):
    write_labels(make_labels("identity"), tmp_path / "out.nii.gz")
    assert (tmp_path / "out.nii.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_write_replaces_an_existing_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.nii.gz"
    path.write_text("old")
    write_labels(make_labels("identity"), path)
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]
    np.testing.assert_array_equal(read_labels(path).array, make_labels("identity").array)


def _fail_after_writing(path, *args, **kwargs):
    Path(str(path)).write_bytes(b"partial")
    raise RuntimeError("Exception thrown in SimpleITK WriteImage:\nsitk::ERROR: disk full")


@pytest.mark.parametrize("ext", [".nii.gz", ".mha"])
def test_failed_sitk_write_leaves_no_file(tmp_path, monkeypatch, ext):
    monkeypatch.setattr(volume_io.sitk, "WriteImage", lambda image, path, *a: _fail_after_writing(path))
    with pytest.raises(OSError, match="disk full"):
        write_labels(make_labels("identity"), tmp_path / f"out{ext}")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_existing_file(tmp_path, monkeypatch):
    path = tmp_path / "image.nrrd"
    path.write_text("old")
    monkeypatch.setattr(volume_io.sitk, "WriteImage", lambda image, p, *a: _fail_after_writing(p))
    with pytest.raises(OSError):
        write_volume(make_image(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["image.nrrd"]
    assert path.read_text() == "old"


def test_failed_seg_nrrd_write_leaves_no_file(tmp_path, monkeypatch):
    def fail(path, segmentation, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(slicerio, "write_segmentation", fail)
    with pytest.raises(OSError, match="disk full"):
        write_labels(make_labels("identity"), tmp_path / "out.seg.nrrd")
    assert list(tmp_path.iterdir()) == []


# same_file ----------------------------------------------------------------------------------------
def test_same_file_sees_through_spelling(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path)
    assert same_file("a/../a/x.nii.gz", tmp_path / "a" / "x.nii.gz")


def test_same_file_sees_through_links(tmp_path):
    target = tmp_path / "image.nii.gz"
    target.write_bytes(b"x")
    (tmp_path / "link.nii.gz").symlink_to(target)
    assert same_file(tmp_path / "link.nii.gz", target)


def test_different_files_are_not_the_same(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    assert not same_file(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")


# Real data ----------------------------------------------------------------------------------------
@pytest.mark.skipif(not (ABDOMEN / "image.nii.gz").exists(), reason=f"shared data {ABDOMEN}/image.nii.gz is absent")
def test_real_abdomen_ct_image():
    volume = read_volume(ABDOMEN / "image.nii.gz")
    assert volume.shape == (112, 101, 122)
    np.testing.assert_allclose(volume.spacing, (3.0, 3.0, 3.0))


@pytest.mark.skipif(
    not (ABDOMEN / "reference_labels.nii.gz").exists(),
    reason=f"shared data {ABDOMEN}/reference_labels.nii.gz is absent",
)
def test_real_abdomen_reference_labels():
    labels = read_labels(ABDOMEN / "reference_labels.nii.gz")
    assert labels.array.dtype == np.uint8
    assert 5 in labels.label_values()
    assert labels.volume.same_grid(read_volume(ABDOMEN / "image.nii.gz"))
