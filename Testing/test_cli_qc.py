"""``samfewshot propagate --qc PNG``: the QC picture of the result, end to end in a subprocess; a
bad --qc path exits 2 with one line before any work, nothing written. (The demo's pictures are
checked in test_demo.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from SAMFewShotLib.errors import InputError
from Testing.test_cli import CENTER, DRAWN, RADII, draw, ellipsoid, render, run_cli, snapshot, write_image


@pytest.fixture(scope="module")
def small_phantom(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("qc_phantom")
    truth = ellipsoid(CENTER, RADII)
    return {
        "dir": folder,
        "image": write_image(folder / "image.nii.gz", render(truth)),
        "annotation": write_image(folder / "ann.nii.gz", draw(truth, DRAWN)),
    }


def test_propagate_writes_the_qc_picture(small_phantom, tmp_path):
    qc = tmp_path / "qc.png"
    result = run_cli(
        "propagate", small_phantom["image"], small_phantom["annotation"], "-o", tmp_path / "seg.nii.gz",
        "--engine", "register", "--report", tmp_path / "report.json", "--qc", qc, "--progress", "none",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qc.png", "report.json", "seg.nii.gz"]
    picture = Image.open(qc)
    assert picture.format == "PNG"
    pixels = np.asarray(picture.convert("RGB"))
    assert (pixels == (255, 255, 255)).all(axis=2).sum() > 100  # the drawn slices' white frames
    assert picture.width > 300 and picture.height > 150


@pytest.mark.parametrize(
    "qc, expected",
    [
        ("out/qc.jpg", ".png"),
        ("nowhere/qc.png", "does not exist"),
        ("out/folder.png", "is a folder"),
        ("out/report.png", "is the input"),
    ],
)
def test_check_qc_path_refuses_bad_paths(qc, expected, tmp_path):
    from SAMFewShotLib.cli.propagate import check_qc_path

    (tmp_path / "out" / "folder.png").mkdir(parents=True)
    with pytest.raises(InputError, match=expected):
        check_qc_path(str(tmp_path / qc), [str(tmp_path / "image.nii.gz"), str(tmp_path / "out" / "report.png")])
    check_qc_path(str(tmp_path / "out" / "qc.PNG"), [str(tmp_path / "out" / "report.png")])  # a good one passes


def test_a_bad_qc_path_exits_2_with_one_line_and_writes_nothing(small_phantom, tmp_path):
    before = snapshot(small_phantom["dir"], tmp_path)
    result = run_cli(
        "propagate", small_phantom["image"], small_phantom["annotation"], "-o", tmp_path / "seg.nii.gz",
        "--report", tmp_path / "report.json", "--qc", tmp_path / "nowhere" / "qc.png",
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "QC picture folder" in lines[0] and "does not exist" in lines[0], result.stderr
    assert snapshot(small_phantom["dir"], tmp_path) == before
