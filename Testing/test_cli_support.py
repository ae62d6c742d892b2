"""``samfewshot propagate --support nearest|kcentroid|kcentroid-direct`` (SAM-MPA's cluster-centre
propagation): bad values exit 2 with one line; a good one runs and the report names the engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from Testing.phantoms import ellipsoid, render

SHAPE = (16, 24, 24)
DRAWN = (4, 8, 12)


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "SAMFewShotLib", *map(str, args)], capture_output=True, encoding="utf-8",
        timeout=120,  # progress bars are UTF-8 whatever the locale (CI runs with an ASCII one)
    )


def write(path: Path, array: np.ndarray) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("support")
    truth = ellipsoid((8, 12, 12), (6, 8, 7), SHAPE)
    drawn = np.zeros(SHAPE, np.uint8)
    for z in DRAWN:
        drawn[z][truth[z]] = 1
    return write(folder / "image.nii.gz", render(truth, seed=0)), write(folder / "drawn.nii.gz", drawn)


@pytest.mark.parametrize(
    "engine, support, message",
    [
        ("register", "closest", "closest"),
        ("interpolate", "kcentroid", "--support is for the register and auto engines"),
        ("register:kcentroid", "nearest", "contradicts"),
    ],
)
def test_a_bad_support_exits_2_with_one_line(phantom, tmp_path, engine, support, message):
    image, drawn = phantom
    result = run_cli("propagate", image, drawn, "-o", tmp_path / "out.nii.gz", "--engine", engine, "--support", support)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_kcentroid_runs_and_the_report_names_the_engine(phantom, tmp_path):
    image, drawn = phantom
    out, report = tmp_path / "out.nii.gz", tmp_path / "report.json"
    result = run_cli(
        "propagate", image, drawn, "-o", out, "--engine", "register", "--support", "kcentroid", "--report", report
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text(encoding="utf-8"))["engine"] == "register:kcentroid"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert labels[6].any() and labels[10].any()  # slices between drawn ones are filled
