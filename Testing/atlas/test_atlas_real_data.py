"""Atlas registration on the real abdominal CT of ../shared/data (skipped when it is absent).

The CT (3 mm) is warped by a known smooth random field (max 10 mm); registering the undeformed
CT and its labels onto it must give the warped labels back better than no registration, and
with Dice >= 0.9 for liver, spleen and kidneys. Lighter settings than the defaults keep the test
short (2 B-spline levels, 300 iterations, 2048 samples: ~7 CPU seconds after elastix is
loaded); the defaults' numbers are those of benchmarks/bench_atlas.py (README).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from SAMFewShotLib.atlas.deformation import deform_case
from SAMFewShotLib.atlas.registration import register_atlas
from SAMFewShotLib.metrics import dice
from SAMFewShotLib.volume_io import read_labels, read_volume

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "abdomen_ct"
pytestmark = [
    pytest.mark.skipif(
        not (DATA / "image.nii.gz").is_file(),
        reason=f"real CT not found at {DATA} (it lives in ../shared/data, outside the repository)",
    ),
    pytest.mark.slow,
]
LABELS = {5: "liver", 1: "spleen", 3: "kidney_left", 2: "kidney_right"}
SETTINGS = {"bspline_resolutions": 2, "bspline_iterations": 300, "spatial_samples": 2048}


@pytest.fixture(scope="module")
def case():
    image = read_volume(DATA / "image.nii.gz")
    labels = read_labels(DATA / "reference_labels.nii.gz")
    target, truth = deform_case(image, labels, 10.0, control_spacing_mm=60.0, seed=1)
    registered = register_atlas(image, labels, target, parameters=SETTINGS)
    return labels, truth, registered


@pytest.mark.parametrize("value", list(LABELS), ids=list(LABELS.values()))
def test_registration_beats_no_registration(case, value):
    labels, truth, registered = case
    before = dice(labels.array == value, truth.array == value)
    after = dice(registered.array == value, truth.array == value)
    assert after > before


@pytest.mark.parametrize("value", list(LABELS), ids=list(LABELS.values()))
def test_large_organs_reach_dice_0_9(case, value):
    _, truth, registered = case
    assert dice(registered.array == value, truth.array == value) >= 0.9


def test_result_is_on_the_target_grid(case):
    _, truth, registered = case
    assert registered.volume.same_grid(truth.volume)
    assert np.isin(np.unique(registered.array), np.unique(truth.array)).all()
