"""Tests of propagation/intensity_refinement.refine_slices: a propagated mask that lost area is
re-decided by the intensity model, within a band around it, connected to it."""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.metrics import dice
from SAMFewShotLib.propagation.intensity_model import IntensityModel
from SAMFewShotLib.propagation.intensity_refinement import RefinementSettings, refine_slices, refinement_reliability

SHAPE = (12, 48, 48)
ROWS, COLS = np.ogrid[: SHAPE[1], : SHAPE[2]]


def disc(radius: float, centre=(24, 20)) -> np.ndarray:
    return (ROWS - centre[0]) ** 2 + (COLS - centre[1]) ** 2 <= radius**2


@pytest.fixture()
def case():
    rng = np.random.default_rng(0)
    truth = np.stack([disc(10)] * SHAPE[0])
    image = rng.normal(40, 6, SHAPE).astype(np.float32)
    image[truth] = rng.normal(120, 6, int(truth.sum()))
    drawn = {0: truth[0].copy()}
    model = IntensityModel([image[0]], [truth[0]], value_range=160.0)
    shrunk = np.stack([disc(7)] * SHAPE[0]).astype(np.float32)  # what a long chain leaves
    shrunk[0] = truth[0]
    return image, truth, drawn, model, shrunk


def test_far_from_the_drawn_slice_the_lost_area_comes_back(case):
    image, truth, drawn, model, shrunk = case
    refined = refine_slices(shrunk, image, model, drawn, slice_mm=3.0)
    far = SHAPE[0] - 1  # 33 mm from the drawn slice, beyond the ramp
    assert dice(shrunk[far][None] > 0.5, truth[far][None]) < 0.7
    assert dice(refined[far][None] > 0.5, truth[far][None]) > 0.95


def test_next_to_the_drawn_slice_the_propagated_edge_is_trusted(case):
    image, truth, drawn, model, shrunk = case
    refined = refine_slices(shrunk, image, model, drawn, slice_mm=3.0, settings=RefinementSettings(ramp_mm=30.0))
    near, far = 1, SHAPE[0] - 1
    gained_near = (refined[near] > 0.5).sum() - (shrunk[near] > 0.5).sum()
    gained_far = (refined[far] > 0.5).sum() - (shrunk[far] > 0.5).sum()
    assert gained_near < 0.3 * gained_far


def test_structure_like_tissue_away_from_the_mask_is_not_added(case):
    image, _, drawn, model, shrunk = case
    blob = disc(4, centre=(24, 42))  # bright, inside the band's reach of nothing
    image = image.copy()
    image[:, blob] = 120.0
    refined = refine_slices(shrunk, image, model, drawn, slice_mm=3.0, settings=RefinementSettings(band_of_radius=3.0))
    assert not (refined[5][blob] > 0.5).any()


def test_drawn_and_empty_slices_are_left_as_they_are(case):
    image, _, drawn, model, shrunk = case
    shrunk[6] = 0.0
    refined = refine_slices(shrunk, image, model, drawn, slice_mm=3.0)
    np.testing.assert_array_equal(refined[0], shrunk[0])
    np.testing.assert_array_equal(refined[6], 0.0)


def test_shapes_must_match(case):
    image, _, drawn, model, shrunk = case
    with pytest.raises(ValueError, match="same shape"):
        refine_slices(shrunk[:3], image, model, drawn, slice_mm=3.0)


def _rimmed(rim: bool) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """A disc of radius 10 drawn on slices 0, 6, 11; with ``rim``, only its inner radius 8 is
    bright and the 2-pixel rim looks like the surroundings (a capsule the user draws but the
    intensities do not show): refinement then moves edges that are right."""
    rng = np.random.default_rng(3)
    drawn_disc = disc(10)
    image = rng.normal(40, 6, SHAPE).astype(np.float32)
    bright = disc(8) if rim else drawn_disc
    image[:, bright] = rng.normal(120, 6, (SHAPE[0], int(bright.sum())))
    return image, {z: drawn_disc.copy() for z in (0, 6, 11)}


def test_reliability_is_how_well_refinement_keeps_a_correct_mask():
    image, drawn = _rimmed(rim=False)
    assert refinement_reliability(image, drawn, 160.0, slice_mm=3.0) > 0.97
    image, drawn = _rimmed(rim=True)  # refinement cuts the drawn rim off
    assert refinement_reliability(image, drawn, 160.0, slice_mm=3.0) < 0.9


def test_reliability_needs_two_drawn_masks():
    image, drawn = _rimmed(rim=False)
    assert refinement_reliability(image, {0: drawn[0]}, 160.0, slice_mm=3.0) is None
