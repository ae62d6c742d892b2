"""auto's ``refined`` candidate: with one drawn slice, the registration re-decided by the intensity
model of the drawn slice (propagation/intensity_refinement.py) instead of plain registration.

Phantom: a bright structure (rendered by Testing.phantoms.render) whose cross-section swells and
shrinks and whose centre swings along z, under strong noise (sd 25): the chained registration
loses area slice after slice, the intensity model gets it back.
"""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.engines import make_engine
from SAMFewShotLib.metrics import dice
from SAMFewShotLib.volume import LabelVolume, Volume
from Testing.phantoms import render

SHAPE = (48, 64, 64)  # (z, y, x)
DRAWN = 24


def noisy_swinging_structure() -> tuple[Volume, np.ndarray]:
    rows, cols = np.ogrid[: SHAPE[1], : SHAPE[2]]
    truth = np.zeros(SHAPE, bool)
    for z in range(4, 44):
        t = (z - 4) / 40
        radius = 8 + 10 * np.sin(np.pi * t) ** 0.5
        centre = 32 + 6 * np.sin(2 * np.pi * t)
        truth[z] = ((rows - centre) / radius) ** 2 + (cols - 32) ** 2 / (0.8 * radius) ** 2 <= 1
    rng = np.random.default_rng(1)
    image = render(truth, 1) + rng.normal(0, 25, SHAPE).astype(np.float32)
    return Volume(image, (1.5, 1.5, 2.0)), truth


@pytest.fixture(scope="module")
def one_slice_runs():
    image, truth = noisy_swinging_structure()
    labels = np.zeros(SHAPE, np.uint8)
    labels[DRAWN][truth[DRAWN]] = 1
    annotation = SparseAnnotation.from_labels(LabelVolume(image.with_array(labels)), axis=0)
    predictions = {name: make_engine(name).propagate(image, annotation) for name in ("register", "auto")}
    return truth, predictions


def test_with_one_drawn_slice_auto_refines_the_registration(one_slice_runs):
    _, predictions = one_slice_runs
    assert predictions["auto"].details[1]["choice"] == "refined"


def test_refinement_recovers_the_area_chained_registration_loses(one_slice_runs):
    truth, predictions = one_slice_runs
    scores = {name: dice(p.labels.array == 1, truth) for name, p in predictions.items()}
    assert scores["register"] < 0.95  # the phantom does hurt plain registration
    assert scores["auto"] > scores["register"] + 0.03
