"""Forward-backward consistency of slice registrations (propagation/flow_consistency.py) and its
off-by-default use as the intensity refinement's ramp."""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.metrics import dice
from SAMFewShotLib.propagation.flow_consistency import (
    accumulated_inconsistency,
    round_trip_error,
    step_inconsistency,
)
from SAMFewShotLib.propagation.intensity_model import IntensityModel
from SAMFewShotLib.propagation.intensity_refinement import refine_slices
from SAMFewShotLib.propagation.slice_flows import SliceFlows
from SAMFewShotLib.propagation.slice_registration import make_registrar

ROWS, COLS = np.ogrid[:48, :48]


def shift(rows: float, cols: float) -> np.ndarray:
    field = np.zeros((2, 48, 48), np.float32)
    field[0], field[1] = rows, cols
    return field


def test_inverse_fields_come_back_and_others_do_not():
    inner = (slice(8, 40), slice(8, 40))  # away from the zero padding of the warp
    assert round_trip_error(shift(2, -1), shift(-2, 1))[inner].max() < 1e-4
    np.testing.assert_allclose(round_trip_error(shift(2, 0), shift(2, 0))[inner], 4.0, atol=1e-4)
    with pytest.raises(ValueError, match="rows, cols"):
        round_trip_error(shift(1, 1), shift(1, 1)[:, :10])


def test_inconsistency_accumulates_from_the_nearest_drawn_slice():
    steps = np.array([0.0, 1.0, 0.5, 0.0, 2.0, 1.0])
    np.testing.assert_allclose(accumulated_inconsistency(steps, [3]), [1.5, 1.5, 0.5, 0.0, 2.0, 3.0])
    np.testing.assert_allclose(accumulated_inconsistency(steps, [0, 5]), [0.0, 1.0, 1.5, 1.5, 2.0, 0.0])


def test_a_registration_that_cannot_be_inverted_is_flagged():
    """A disc sliding smoothly registers consistently; where a second disc appears next to it
    (no inverse exists for what appears from nowhere), the round trip fails at the edge."""
    rng = np.random.default_rng(0)
    stack = rng.normal(0.2, 0.02, (6, 48, 48)).astype(np.float32)
    masks = np.zeros((6, 48, 48), bool)
    for z in range(6):
        masks[z] = (ROWS - 24) ** 2 + (COLS - 18 - z) ** 2 <= 8**2
        stack[z][masks[z]] = 0.8
    stack[4:][:, (ROWS - 24) ** 2 + (COLS - 36) ** 2 <= 6**2] = 0.8  # appears on slice 4
    whole = (slice(0, 48), slice(0, 48))
    with SliceFlows(stack, (1.0, 1.0), make_registrar("dis"), workers=1) as flows:
        steps = step_inconsistency(flows, masks.astype(np.float32), whole)
    assert steps[1] < 0.5 and steps[2] < 0.5
    assert steps[4] > 2 * max(steps[1], steps[2])


def test_an_inconsistent_chain_is_refined_next_to_its_drawn_slice():
    """The distance ramp trusts the chain next to a drawn slice; with the round-trip error as
    the ramp, a slice the registration could not follow is refined there too."""
    rng = np.random.default_rng(0)
    truth = np.stack([(ROWS - 24) ** 2 + (COLS - 20) ** 2 <= 10**2] * 4)
    image = rng.normal(40, 6, truth.shape).astype(np.float32)
    image[truth] = rng.normal(120, 6, int(truth.sum()))
    shrunk = np.stack([(ROWS - 24) ** 2 + (COLS - 20) ** 2 <= 6**2] * 4).astype(np.float32)
    shrunk[0] = truth[0]
    drawn = {0: truth[0]}
    model = IntensityModel([image[0]], [truth[0]], value_range=160.0)
    by_distance = refine_slices(shrunk, image, model, drawn, slice_mm=3.0)
    by_consistency = refine_slices(shrunk, image, model, drawn, 3.0, inconsistency=np.array([0.0, 5.0, 5.0, 5.0]))
    assert dice(by_distance[1][None] > 0.5, truth[1][None]) < 0.8
    assert dice(by_consistency[1][None] > 0.5, truth[1][None]) > 0.95
    with pytest.raises(ValueError, match="one value per slice"):
        refine_slices(shrunk, image, model, drawn, 3.0, inconsistency=np.zeros(3))
