"""files.py: the one atomic write path (complete file or none, no temporary left) and sha256."""

from __future__ import annotations

import errno
import hashlib
import json
import os

import numpy as np
import pytest

from SAMFewShotLib import files


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_bytes_are_written_whole_and_no_temporary_is_left(tmp_path):
    data = np.random.default_rng(0).bytes(100_000)
    out = files.write_bytes_atomic(tmp_path / "a.bin", data)
    assert out.read_bytes() == data
    assert _names(tmp_path) == ["a.bin"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "image.nii.gz"
    target.write_bytes(b"old")

    def write(temp):
        assert temp.parent == tmp_path and temp.name.endswith(".nii.gz")  # same folder, extension kept
        temp.write_bytes(b"half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        files.write_atomic(target, write, suffix=".nii.gz")
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["image.nii.gz"]


def test_a_writer_that_leaves_an_empty_file_is_an_oserror(tmp_path):
    """A full disk can make a writer return normally with a 0-byte file."""
    with pytest.raises(OSError, match="0 bytes"):
        files.write_atomic(tmp_path / "out.nrrd", lambda temp: temp.write_bytes(b""), suffix=".nrrd")
    assert _names(tmp_path) == []


def test_a_failing_rename_leaves_nothing_behind(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "replace", no_space)
    with pytest.raises(OSError, match="(?i)no space"):
        files.write_text_atomic(tmp_path / "report.json", "{}")
    assert _names(tmp_path) == []


def test_a_short_stream_write_is_detected(tmp_path, monkeypatch):
    """If the file on disk holds fewer bytes than were written, nothing is renamed into place."""
    real_stat = os.stat

    class Short:
        def __init__(self, result):
            self._result = result

        def __getattr__(self, name):
            return 1 if name == "st_size" else getattr(self._result, name)

    monkeypatch.setattr(files.Path, "stat", lambda self, **kw: Short(real_stat(self)))
    with pytest.raises(OSError, match="holds 1"):
        files.write_bytes_atomic(tmp_path / "a.bin", b"abc")
    monkeypatch.undo()
    assert _names(tmp_path) == []


def test_write_json_atomic_writes_indented_json_safe_values(tmp_path):
    path = tmp_path / "r.json"
    files.write_json_atomic(str(path), {"dice": np.float32(0.5), "nan": float("nan"), "a": np.arange(2)})
    text = path.read_text()
    assert text.endswith("\n") and text.startswith("{\n  ")
    assert json.loads(text) == {"dice": 0.5, "nan": None, "a": [0, 1]}


def test_sha256_file_matches_hashlib_and_reports_progress(tmp_path):
    data = np.random.default_rng(1).bytes(3 * (1 << 20) + 5)
    path = tmp_path / "w.pth"
    path.write_bytes(data)
    seen = []
    assert files.sha256_file(path, progress=lambda stage, done, total: seen.append(done)) == (
        hashlib.sha256(data).hexdigest()
    )
    assert seen[-1] == len(data)
