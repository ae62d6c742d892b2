"""Item 3: bounded resources before reading -- header voxel counts against a memory-derived limit,
bundle members' declared sizes before extracting, members streamed with size and sha256 checks."""

from __future__ import annotations

import hashlib
import json
import time
import zipfile

import numpy as np
import pytest

from SAMFewShotLib.atlas.bundle import MAX_BUNDLE_BYTES_ENV, load_bundle, write_bundle
from SAMFewShotLib.errors import InputError
from SAMFewShotLib.input_checks import MAX_VOXELS_ENV, max_voxels
from SAMFewShotLib.volume import LabelVolume, Segment, Volume
from SAMFewShotLib.volume_io import read_labels, read_volume
from Testing.faults.fault_helpers import run_cli, tiny_case

NRRD_BOMB = (
    b"NRRD0004\ntype: float\ndimension: 3\nsizes: 2000 2000 1500\nspacings: 1 1 1\n"
    b"encoding: raw\nendian: little\n\n"
)


def test_a_tiny_header_claiming_six_billion_voxels_is_refused_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv(MAX_VOXELS_ENV, raising=False)
    bomb = tmp_path / "bomb.nrrd"
    bomb.write_bytes(NRRD_BOMB)
    assert max_voxels() is not None and max_voxels() < 2000 * 2000 * 1500  # this machine's memory bound
    start = time.perf_counter()
    with pytest.raises(InputError, match="2000x2000x1500 = 6,000,000,000 voxels, more than"):
        read_volume(bomb)
    assert time.perf_counter() - start < 5


def test_the_voxel_limit_is_checked_on_the_header_before_reading(tmp_path, monkeypatch):
    image, labels = tiny_case(tmp_path)
    monkeypatch.setenv(MAX_VOXELS_ENV, "1000")
    with pytest.raises(InputError, match=r"16x16x12 = 3,072 voxels, more than the 1,000"):
        read_volume(image)
    with pytest.raises(InputError, match="more than the 1,000"):
        read_labels(labels)


def test_the_command_line_option_sets_the_voxel_limit(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv(MAX_VOXELS_ENV, raising=False)
    image, labels = tiny_case(tmp_path)
    code, err, _ = run_cli(["--max-voxels", "100", "propagate", image, labels, "-o", tmp_path / "o.nii.gz",
                            "--progress", "none"], capfd)
    assert code == 2 and len(err) == 1 and "more than the 100 " in err[0], err


# Bundles ----------------------------------------------------------------------------------------
@pytest.fixture
def bundle(tmp_path):
    rng = np.random.default_rng(4)
    image = Volume(rng.normal(0, 100, (10, 12, 14)).astype(np.float32))
    labels = LabelVolume(image.with_array((rng.random((10, 12, 14)) > 0.5).astype(np.uint8)), (Segment(1, "a"),))
    return write_bundle(tmp_path / "atlas.zip", name="a", atlases=[(image, labels)])


def flip_inside_member(path, member: str) -> None:
    """Flip one bit in the middle of ``member``'s compressed bytes, leaving the zip's directory intact."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    header = info.header_offset
    name_length = int.from_bytes(data[header + 26: header + 28], "little")
    extra_length = int.from_bytes(data[header + 28: header + 30], "little")
    start = header + 30 + name_length + extra_length
    data[start + info.compress_size // 2] ^= 0x04
    path.write_bytes(bytes(data))


def test_a_bit_flipped_member_is_one_line_and_exit_2(bundle, tmp_path, capfd):
    flip_inside_member(bundle, "atlases/atlas_0_image.nii.gz")
    with pytest.raises(InputError, match="atlas_0_image.nii.gz is corrupt"):
        load_bundle(bundle)
    code, err, _ = run_cli(["atlas", "info", bundle], capfd)
    assert code == 2 and len(err) == 1 and "corrupt" in err[0], err


def test_declared_sizes_over_the_limit_are_refused_before_extracting(bundle, monkeypatch, tmp_path):
    monkeypatch.setenv(MAX_BUNDLE_BYTES_ENV, "1000")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    with pytest.raises(InputError, match="declare .* bytes, more than the 1,000 allowed"):
        load_bundle(bundle)
    assert list((tmp_path / "scratch").iterdir()) == []


def test_a_member_longer_than_declared_stops_at_its_declared_size(tmp_path):
    """A zip whose local data decompress to more bytes than its directory declares (a zip bomb
    disguised as a small member) is stopped without writing more than the declared size."""
    payload = b"\0" * (4 << 20)
    manifest = {
        "format_version": 1, "name": "x", "modality": "CT", "engine": "registration",
        "labels": [{"value": 1, "name": "a", "color": [1, 0, 0]}], "parameters": {},
        "normalisation": {"method": "none"}, "weights": [],
        "atlases": [{"image": "atlases/i.nii.gz", "labels": "atlases/l.nii.gz"}],
        "sha256": {"atlases/i.nii.gz": hashlib.sha256(payload).hexdigest(), "atlases/l.nii.gz": "0" * 64},
    }
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("atlases/i.nii.gz", payload)
        archive.writestr("atlases/l.nii.gz", b"x")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("atlases/i.nii.gz")
    # lower the declared size in the central directory (and the local header) to 1000 bytes
    central = data.rfind(b"atlases/i.nii.gz") - 46
    data[central + 24: central + 28] = (1000).to_bytes(4, "little")
    data[info.header_offset + 22: info.header_offset + 26] = (1000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="more than its declared 1,000 bytes|corrupt"):
        load_bundle(path)
