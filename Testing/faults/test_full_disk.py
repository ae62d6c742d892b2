"""Item 2: outputs are complete or absent; a full disk is exit 2 with one line; an output and
its --report are written both or neither."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from SAMFewShotLib import files
from SAMFewShotLib.files import WriteError, write_json_atomic
from SAMFewShotLib.volume import LabelVolume, Volume
from SAMFewShotLib.volume_io import write_labels
from Testing.faults.fault_helpers import run_cli, tiny_case, use_copy_engine


@pytest.fixture(autouse=True)
def copy_engine(monkeypatch):
    use_copy_engine(monkeypatch)


FORMATS = [".nii.gz", ".nii", ".nrrd", ".mha", ".seg.nrrd"]


def labels_of(shape=(48, 48, 48)) -> LabelVolume:
    rng = np.random.default_rng(3)
    return LabelVolume(Volume(rng.integers(0, 4, shape).astype(np.uint8)))


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failing_rename_leaves_nothing_and_names_path_and_reason(tmp_path, monkeypatch):
    out = tmp_path / "out.nii.gz"
    monkeypatch.setattr(os, "replace", enospc)
    with pytest.raises(WriteError) as caught:
        write_labels(labels_of((4, 5, 6)), out)
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value).startswith(f"{out}: cannot write the file (no space left on device)")
    assert list(tmp_path.iterdir()) == []


def test_a_writer_that_ignores_a_full_disk_is_caught_by_the_completeness_check(tmp_path, monkeypatch):
    """ITK's gzip writer can 'succeed' on a full disk with a truncated stream: the written file is
    checked end to end and refused."""
    import SimpleITK as sitk

    real = sitk.WriteImage

    def truncating(image, name, compress=False):
        real(image, name, compress)
        data = Path(name).read_bytes()
        Path(name).write_bytes(data[: len(data) // 2])

    monkeypatch.setattr(sitk, "WriteImage", truncating)
    out = tmp_path / "out.nii.gz"
    with pytest.raises(WriteError, match="incomplete"):
        write_labels(labels_of((6, 7, 8)), out)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_report_leaves_no_output_and_exits_2_with_one_line(tmp_path, monkeypatch, capfd):
    image, labels = tiny_case(tmp_path)
    out, report = tmp_path / "out.nii.gz", tmp_path / "report.json"
    real_open = open

    def full_for_reports(name, mode="r", *args, **kwargs):
        handle = real_open(name, mode, *args, **kwargs)
        if "report" in os.fspath(name) and "w" in mode:
            handle.close()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(name))
        return handle

    monkeypatch.setattr(files, "open", full_for_reports, raising=False)
    code, err, _ = run_cli(
        ["propagate", image, labels, "-o", out, "--report", report, "--engine", "interpolate", "--progress", "none"],
        capfd,
    )
    assert code == 2 and len(err) == 1, err
    assert str(report) in err[0] and "no space left on device" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.nii.gz", "labels.nii.gz"]


def test_output_and_report_are_both_written_when_nothing_fails(tmp_path, capfd):
    image, labels = tiny_case(tmp_path)
    out, report = tmp_path / "out.nii.gz", tmp_path / "report.json"
    code, err, _ = run_cli(
        ["propagate", image, labels, "-o", out, "--report", report, "--engine", "interpolate", "--progress", "none"],
        capfd,
    )
    assert code == 0, err
    assert out.is_file() and report.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.nii.gz", "labels.nii.gz", "out.nii.gz", "report.json"]


def test_a_read_only_destination_is_one_line(tmp_path, monkeypatch):
    def erofs(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "fsync", erofs)
    with pytest.raises(WriteError, match="read-only file system"):
        write_json_atomic(str(tmp_path / "r.json"), {"a": 1})
    assert list(tmp_path.iterdir()) == []


# A truly full file system ------------------------------------------------------------------------
@pytest.fixture
def full_folder(tmp_path):
    """A 64 KiB tmpfs filled to the last byte (skips where mounting is not allowed)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, os.urandom(4096)):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.parametrize("ext", FORMATS)
def test_a_full_file_system_leaves_no_file_for_every_format(full_folder, ext):
    out = full_folder / f"out-{uuid.uuid4().hex[:6]}{ext}"
    with pytest.raises(WriteError) as caught:
        write_labels(labels_of(), out)
    assert str(out) in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(p.name for p in full_folder.iterdir()) == ["filler"]


@pytest.mark.parametrize("ext", [".nii.gz", ".nii"])
def test_the_command_line_on_a_full_file_system_exits_2_with_one_line(tmp_path, full_folder, capfd, ext):
    image, labels = tiny_case(tmp_path)
    out = full_folder / f"out{ext}"
    code, err, _ = run_cli(
        ["propagate", image, labels, "-o", out, "--engine", "interpolate", "--progress", "none"], capfd
    )
    assert code == 2 and len(err) == 1 and str(out) in err[0], err
    assert sorted(p.name for p in full_folder.iterdir()) == ["filler"]
