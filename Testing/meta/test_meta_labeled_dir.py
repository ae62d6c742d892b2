"""The LABELED_DIR layouts of meta-train, and one-line errors for everything else."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from SAMFewShotLib.meta.labeled_dir import find_labeled_cases


def touch(folder, *names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_images_and_labels_folders_pair_by_file_name(tmp_path):
    touch(tmp_path, "images/b.nii.gz", "images/a.nrrd", "labels/a.nrrd", "labels/b.nii.gz", "images/notes.txt")
    cases = find_labeled_cases(tmp_path)
    assert [(c.name, c.image.name, c.labels.name) for c in cases] == [("a", "a.nrrd", "a.nrrd"), ("b", "b.nii.gz", "b.nii.gz")]


def test_name_image_and_name_labels_pairs(tmp_path):
    touch(tmp_path, "case1_image.nii.gz", "case1_labels.seg.nrrd", "case2_image.mha", "case2_labels.nii", "readme.md")
    cases = find_labeled_cases(tmp_path)
    assert [(c.name, c.labels.name) for c in cases] == [("case1", "case1_labels.seg.nrrd"), ("case2", "case2_labels.nii")]


@pytest.mark.parametrize(
    "files, match",
    [
        (("case1_image.nii.gz",), "has no labels file"),
        (("case1_labels.nii.gz",), "have no image"),
        (("images/a.nii.gz", "labels/b.nii.gz"), "has no labels file"),
        (("images/a.nii.gz",), "has no labels/ folder"),
        (("notes.txt",), "holds no labelled volume"),
        (("images/a.nii.gz", "images/a.nrrd", "labels/a.nii.gz"), "Two files for case 'a'"),
    ],
)
def test_incomplete_folders_are_refused_with_one_line(tmp_path, files, match):
    touch(tmp_path, *files)
    with pytest.raises(ValueError, match=match) as error:
        find_labeled_cases(tmp_path)
    assert "\n" not in str(error.value)


def test_a_file_is_not_a_labeled_dir(tmp_path):
    touch(tmp_path, "x.nii.gz")
    with pytest.raises(ValueError, match="is not a folder"):
        find_labeled_cases(tmp_path / "x.nii.gz")
