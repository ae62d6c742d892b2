"""Batch inputs: files, globs, folders and DICOM study folders become cases with unique ids."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from SAMFewShotLib.batch.inputs import expand_inputs, image_extension, input_signature, read_case_image
from SAMFewShotLib.volume import LabelVolume
from SAMFewShotLib.volume_io import write_labels, write_volume
from Testing.batch.batch_helpers import case_volume, write_cases


def write_dicom_series(folder, array: np.ndarray, *, series_number: int, spacing, origin) -> None:
    """One DICOM file per z slice of ``array`` (z, y, x), int16, a CT series of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = f"1.2.826.0.1.3680043.2.1125.{series_number}.{array.shape[0]}"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(array.shape[0]):
        image = sitk.GetImageFromArray(array[z].astype(np.int16))
        image.SetSpacing(spacing[:2])
        position = (origin[0], origin[1], origin[2] + z * spacing[2])
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{z + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series_uid,
            "0020|0011": str(series_number),
            "0020|0013": str(z + 1),
            "0020|0032": "\\".join(f"{p:g}" for p in position),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": f"{spacing[2]:g}",
        }
        for key, value in tags.items():
            image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"series{series_number}_{z:03d}.dcm"))
        writer.Execute(image)


def test_files_keep_their_order_and_get_their_names_as_ids(tmp_path):
    paths = write_cases(tmp_path, 3, names=["b", "a", "c"])
    cases = expand_inputs([str(p) for p in paths])
    assert [c.case_id for c in cases] == ["b", "a", "c"]
    assert [c.path for c in cases] == [str(p) for p in paths]


def test_a_glob_matches_sorted_files_and_a_file_given_twice_is_one_case(tmp_path):
    write_cases(tmp_path, 3)
    cases = expand_inputs([str(tmp_path / "case*.nii.gz"), str(tmp_path / "case2.nii.gz")])
    assert [c.case_id for c in cases] == ["case1", "case2", "case3"]


def test_a_folder_is_searched_recursively_and_skips_segmentations_and_the_output_folder(tmp_path):
    write_cases(tmp_path / "in", 2)
    write_cases(tmp_path / "in" / "deeper", 1, names=["other"])
    labels = LabelVolume(case_volume(1).with_array(np.ones((6, 8, 10), np.uint8)))
    write_labels(labels, tmp_path / "in" / "drawn.seg.nrrd")
    write_cases(tmp_path / "in" / "out", 1, names=["previous_result"])
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    cases = expand_inputs([str(tmp_path / "in")], exclude=[str(tmp_path / "in" / "out")])
    assert [c.case_id for c in cases] == ["case1", "case2", "other"]


def test_colliding_names_are_prefixed_with_the_folders_that_differ(tmp_path):
    write_cases(tmp_path / "patient1", 1, names=["ct"])
    write_cases(tmp_path / "patient2", 1, names=["ct"])
    write_cases(tmp_path / "patient2" / "x", 1, names=["CT"])
    cases = expand_inputs([str(tmp_path)])
    ids = [c.case_id for c in cases]
    assert ids == ["patient1_ct", "patient2_ct", "patient2_x_CT"]
    assert len({i.lower() for i in ids}) == 3


def test_a_dicom_study_folder_with_two_series_gives_two_cases_read_separately(tmp_path):
    study = tmp_path / "study"
    ct = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    mr = np.full((3, 4, 5), 9, np.int16)
    write_dicom_series(study, ct, series_number=2, spacing=(0.8, 0.8, 2.5), origin=(-10.0, 4.0, 30.0))
    write_dicom_series(study, mr, series_number=5, spacing=(1.5, 1.5, 4.0), origin=(0.0, 0.0, 0.0))
    cases = expand_inputs([str(study)])
    assert [c.case_id for c in cases] == ["study_s2", "study_s5"]
    assert [len(c.series_files) for c in cases] == [5, 3]
    first, second = (read_case_image(c) for c in cases)
    np.testing.assert_array_equal(first.array, ct)
    np.testing.assert_allclose(first.spacing, (0.8, 0.8, 2.5), atol=1e-4)
    np.testing.assert_allclose(first.origin, (-10.0, 4.0, 30.0), atol=1e-4)
    np.testing.assert_array_equal(second.array, mr)
    np.testing.assert_allclose(second.spacing, (1.5, 1.5, 4.0), atol=1e-4)


def test_a_folder_with_one_dicom_series_is_one_case_named_after_it(tmp_path):
    write_dicom_series(tmp_path / "chest", np.ones((3, 4, 5), np.int16), series_number=1, spacing=(1, 1, 1), origin=(0, 0, 0))
    cases = expand_inputs([str(tmp_path)])
    assert [c.case_id for c in cases] == ["chest"]
    assert read_case_image(cases[0]).shape == (3, 4, 5)


def test_an_input_that_matches_nothing_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        expand_inputs([str(tmp_path / "missing.nii.gz")])
    with pytest.raises(ValueError, match="no file or folder matches"):
        expand_inputs([str(tmp_path / "*.nrrd")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No image found"):
        expand_inputs([str(tmp_path / "empty")])


def test_the_signature_changes_when_an_input_is_rewritten(tmp_path):
    path = write_cases(tmp_path, 1)[0]
    case = expand_inputs([str(path)])[0]
    before = input_signature(case)
    write_volume(case_volume(1, shape=(6, 8, 11)), path)
    assert input_signature(case) != before


def test_image_extension_knows_compound_extensions_and_excludes_segmentations():
    assert image_extension("ct.NII.GZ") == ".nii.gz"
    assert image_extension("ct.mha") == ".mha"
    assert image_extension("labels.seg.nrrd") is None
    assert image_extension(".nii.gz") is None
