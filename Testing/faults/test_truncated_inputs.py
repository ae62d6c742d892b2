"""Item 1: inputs are read completely or refused (truncated gzip / raw data, missing DICOM slice)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from SAMFewShotLib.errors import InputError
from SAMFewShotLib.volume import LabelVolume, Volume
from SAMFewShotLib.volume_io import read_labels, read_volume, write_labels
from Testing.faults.fault_helpers import run_cli, tiny_case, truncated_copy, use_copy_engine
from Testing.test_volume_io import write_dicom_series


@pytest.fixture(autouse=True)
def copy_engine(monkeypatch):
    use_copy_engine(monkeypatch)


def test_a_truncated_nii_gz_image_is_refused(tmp_path):
    image, _ = tiny_case(tmp_path)
    cut = truncated_copy(image, tmp_path / "cut.nii.gz")
    with pytest.raises(InputError, match="truncated"):
        read_volume(cut)


def test_a_truncated_nii_gz_annotation_is_refused(tmp_path):
    _, labels = tiny_case(tmp_path)
    cut = truncated_copy(labels, tmp_path / "cut.nii.gz", keep=0.7)
    with pytest.raises(InputError, match="truncated"):
        read_labels(cut)


def test_a_gzip_stream_with_a_bit_flip_is_refused(tmp_path):
    image, _ = tiny_case(tmp_path)
    data = bytearray(image.read_bytes())
    data[3 * len(data) // 4] ^= 0x10
    flipped = tmp_path / "flipped.nii.gz"
    flipped.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt|truncated|cannot read"):
        read_volume(flipped)


@pytest.mark.parametrize("keep", [0.97, 0.8])  # inside the gzip data; inside the header
def test_a_truncated_seg_nrrd_is_refused(tmp_path, keep):
    _, labels = tiny_case(tmp_path, ".seg.nrrd")
    cut = truncated_copy(labels, tmp_path / "cut.seg.nrrd", keep=keep)
    with pytest.raises(InputError, match="truncated"):
        read_labels(cut)


@pytest.mark.parametrize("ext", [".mha", ".nrrd", ".nii"])
def test_truncated_raw_data_is_refused_with_one_line(tmp_path, capfd, ext):
    rng = np.random.default_rng(1)
    image = Volume(rng.integers(0, 100, (10, 12, 14)).astype(np.int16))
    path = tmp_path / f"raw{ext}"
    import SimpleITK as sitk

    sitk.WriteImage(image.to_sitk(), str(path), False)  # uncompressed
    cut = truncated_copy(path, tmp_path / f"cut{ext}", keep=0.6)
    with pytest.raises(InputError, match="truncated"):
        read_volume(cut)
    labels = tmp_path / "labels.nii.gz"
    write_labels(LabelVolume(image.with_array(np.zeros((10, 12, 14), np.uint8))), labels)
    code, err, _ = run_cli(
        ["propagate", cut, labels, "-o", tmp_path / "out.nii.gz", "--engine", "interpolate", "--progress", "none"],
        capfd,
    )
    assert code == 2 and len(err) == 1 and "truncated" in err[0], err
    assert not (tmp_path / "out.nii.gz").exists()


def test_the_truncated_image_through_the_command_line_exits_2_with_one_line(tmp_path, capfd):
    image, labels = tiny_case(tmp_path)
    cut = truncated_copy(image, tmp_path / "cut.nii.gz")
    out = tmp_path / "out.nii.gz"
    code, err, _ = run_cli(
        ["propagate", cut, labels, "-o", out, "--engine", "interpolate", "--progress", "none"], capfd
    )
    assert code == 2 and len(err) == 1 and "cut.nii.gz" in err[0] and "truncated" in err[0], err
    assert not out.exists()


def test_complete_gzip_files_with_trailing_members_still_read(tmp_path):
    """A valid multi-member gzip stream is complete: it must not be refused."""
    image, _ = tiny_case(tmp_path)
    raw = gzip.decompress(image.read_bytes())
    half = len(raw) // 2
    two = tmp_path / "two_members.nii.gz"
    two.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    np.testing.assert_array_equal(read_volume(two).array, read_volume(image).array)


def test_a_dicom_series_missing_a_middle_slice_is_refused_naming_it(tmp_path):
    rng = np.random.default_rng(2)
    volume = Volume(rng.integers(-1000, 1000, (8, 10, 12)).astype(np.int16), spacing=(0.8, 0.8, 2.5))
    write_dicom_series(tmp_path, volume, "1.2.826.0.1.3680043.2.1125.9.1")
    files = sorted(tmp_path.glob("*.dcm"))
    assert read_volume(tmp_path).shape == (8, 10, 12)
    files[4].unlink()
    with pytest.raises(InputError, match="missing 1 slice") as caught:
        read_volume(tmp_path)
    assert files[3].name in str(caught.value) and files[5].name in str(caught.value)
