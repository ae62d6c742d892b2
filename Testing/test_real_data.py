"""Engines on the real abdominal CT of ../shared/data (skipped when the folder is absent).

The CT (122 x 101 x 112 voxels, 3 mm) and its TotalSegmentator reference live outside the
repository; a fresh clone has no ../shared, and these tests then skip with the reason.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from SAMFewShotLib.bench import run_bench
from SAMFewShotLib.volume_io import read_labels, read_volume

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "abdomen_ct"
IMAGE, REFERENCE = DATA / "image.nii.gz", DATA / "reference_labels.nii.gz"
pytestmark = pytest.mark.skipif(
    not (IMAGE.exists() and REFERENCE.exists()),
    reason=f"real CT not found at {DATA} (it lives in ../shared/data, outside the repository)",
)

KIDNEY_LEFT, AORTA = 3, 52


@pytest.fixture(scope="module")
def bench():
    image, reference = read_volume(IMAGE), read_labels(REFERENCE)
    return run_bench(
        image,
        reference,
        {KIDNEY_LEFT: "kidney_left", AORTA: "aorta"},
        ks=[1, 3],
        engines=["interpolate", "register", "auto"],
    )


def dice_of(bench, engine: str, label: int, k: int) -> float:
    (record,) = [r for r in bench.records if r.engine == engine and r.label == label and r.k == k]
    return record.dice


@pytest.mark.parametrize("label", [KIDNEY_LEFT, AORTA])
def test_register_beats_fill_between_slices_at_k3(bench, label):
    assert dice_of(bench, "register", label, 3) > dice_of(bench, "interpolate", label, 3) + 0.05
    assert dice_of(bench, "register", label, 3) > 0.85


@pytest.mark.parametrize("label", [KIDNEY_LEFT, AORTA])
def test_one_slice_is_enough_for_register(bench, label):
    assert dice_of(bench, "interpolate", label, 1) < 0.1  # Fill between slices needs two slices
    assert dice_of(bench, "register", label, 1) > 0.75


@pytest.mark.parametrize("label", [KIDNEY_LEFT, AORTA])
def test_auto_is_as_good_as_the_better_engine(bench, label):
    for k in (1, 3):
        best = max(dice_of(bench, "register", label, k), dice_of(bench, "interpolate", label, k))
        assert dice_of(bench, "auto", label, k) >= best - 0.01


def test_cli_keeps_the_ct_geometry_and_the_drawn_slices(tmp_path):
    """propagate on the real file: output on the image's grid, drawn slices exact, input untouched."""
    reference = read_labels(REFERENCE)
    drawn = np.zeros_like(reference.array)
    for z in (75, 88, 100):
        drawn[z][reference.array[z] == KIDNEY_LEFT] = KIDNEY_LEFT
    annotation_path = tmp_path / "annotation.nii.gz"
    from SAMFewShotLib.volume_io import write_labels

    write_labels(reference.with_array(drawn, segments=()), annotation_path)
    before = IMAGE.read_bytes()
    out = tmp_path / "kidney.nii.gz"
    result = subprocess.run(
        [sys.executable, "-m", "SAMFewShotLib", "propagate", str(IMAGE), str(annotation_path), "-o", str(out),
         "--engine", "register", "--progress", "none"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    image, output = read_volume(IMAGE), read_labels(out)
    assert output.volume.same_grid(image, tolerance=1e-5)
    for z in (75, 88, 100):
        np.testing.assert_array_equal(output.array[z] == KIDNEY_LEFT, drawn[z] == KIDNEY_LEFT)
    assert IMAGE.read_bytes() == before
