"""A structure drawn on one slice gets a wide crop (register.SINGLE_SLICE_MARGIN_MM): its chains
run furthest from the drawing, and a structure that moves in-plane must not leave the crop.

Phantom: a bright textured disc (12 mm radius, 2 mm pixels) drawn on the middle slice, whose
centre slides 44 mm sideways over the 16 slices above it; the default 24 mm margin would cut it.
"""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.engines import make_engine
from SAMFewShotLib.engines.register import SINGLE_SLICE_MARGIN_MM, RegisterEngine
from SAMFewShotLib.metrics import dice
from SAMFewShotLib.volume import LabelVolume, Volume
from Testing.phantoms import render

SHAPE = (36, 64, 96)  # (z, y, x)
PIXEL_MM = 2.0
DRAWN = 12


def sliding_disc() -> tuple[Volume, np.ndarray]:
    rows, cols = np.ogrid[: SHAPE[1], : SHAPE[2]]
    truth = np.zeros(SHAPE, bool)
    for z in range(4, 30):
        shift = 22 * np.clip((z - DRAWN) / 16, 0, 1)  # pixels: 44 mm at slice 28
        truth[z] = (rows - 32) ** 2 + (cols - 24 - shift) ** 2 <= 6**2
    return Volume(render(truth, 4), (PIXEL_MM, PIXEL_MM, 2.0)), truth


@pytest.fixture(scope="module")
def case():
    image, truth = sliding_disc()
    labels = np.zeros(SHAPE, np.uint8)
    labels[DRAWN][truth[DRAWN]] = 1
    return image, truth, SparseAnnotation.from_labels(LabelVolume(image.with_array(labels)), axis=0)


def test_the_crop_of_a_single_drawn_slice_has_the_wide_margin(case):
    _, truth, annotation = case
    rows, cols = RegisterEngine.crop(annotation, 1)
    drawn_cols = np.flatnonzero(truth[DRAWN].any(axis=0))
    assert (cols.stop - 1 - drawn_cols[-1]) * PIXEL_MM >= SINGLE_SLICE_MARGIN_MM - PIXEL_MM


def test_a_structure_sliding_out_of_a_tight_crop_is_followed(case):
    image, truth, annotation = case
    prediction = make_engine("register").propagate(image, annotation)
    far = slice(24, 30)  # 33-44 mm off the drawn position
    assert dice(prediction.labels.array[far] == 1, truth[far]) > 0.6  # 0.47 with a 24 mm margin
