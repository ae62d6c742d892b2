"""Tests of the auto engine (make_engine("auto")): leave-one-slice-out choice per structure
between register, interpolate and their fusion.

Two phantoms pull the choice apart:
- "shape": an ellipse whose in-plane shape turns from wide to tall along z, with exactly the
  background's intensity statistics (independent texture per slice): registration has nothing
  to track, contour interpolation captures the shape change.
- "moving": a bright textured ellipse whose centre swings along a curve: interpolation between
  sparse slices cuts the curve, registration follows the image.
Dice is compared between the outermost drawn slices, where the choice applies (beyond them auto
always extrapolates with register).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.engines import make_engine
from SAMFewShotLib.engines.auto import CHOICES, DEFAULT_EXTRAPOLATION
from SAMFewShotLib.metrics import dice
from SAMFewShotLib.volume import LabelVolume, Volume

SHAPE = (32, 56, 56)  # (z, y, x)
SPACING = (1.0, 1.0, 2.0)  # (x, y, z) mm
#: Auto may lose at most this much Dice to the better of register and interpolate.
DICE_SLACK = 0.02


def texture(rng: np.random.Generator, shape, sigma: float = 1.5) -> np.ndarray:
    t = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return t / t.std()


def ellipses(centres, radii) -> np.ndarray:
    """(z, y, x) bool: on slice z the ellipse of centre centres[z] and radii radii[z] (None: empty)."""
    rows, cols = np.ogrid[: SHAPE[1], : SHAPE[2]]
    truth = np.zeros(SHAPE, bool)
    for z, (centre, radius) in enumerate(zip(centres, radii)):
        if centre is not None:
            truth[z] = ((rows - centre[0]) / radius[0]) ** 2 + ((cols - centre[1]) / radius[1]) ** 2 <= 1
    return truth


def annotate(image: Volume, truth: np.ndarray, drawn: list[int]) -> SparseAnnotation:
    labels = np.zeros(SHAPE, np.uint8)
    for z in drawn:
        labels[z][truth[z]] = 1
    return SparseAnnotation.from_labels(LabelVolume(image.with_array(labels)), axis=0)


def shape_phantom() -> tuple[Volume, np.ndarray, list[int]]:
    t = np.clip((np.arange(SHAPE[0]) - 4) / 23, 0, 1)
    present = (np.arange(SHAPE[0]) >= 4) & (np.arange(SHAPE[0]) <= 27)
    truth = ellipses(
        [(28, 28) if p else None for p in present], [(6 + 10 * s, 16 - 10 * s) for s in t]
    )
    rng = np.random.default_rng(3)
    image = 50 + 8 * np.stack([texture(rng, SHAPE[1:]) for _ in range(SHAPE[0])])
    return Volume(image.astype(np.float32), SPACING), truth, [4, 10, 16, 22, 27]


def moving_phantom() -> tuple[Volume, np.ndarray, list[int]]:
    z = np.arange(SHAPE[0])
    t = (z - 4) / 23
    present = (z >= 4) & (z <= 27)
    centres = [(28 + 9 * np.sin(2 * np.pi * s), 28 + 7 * np.cos(np.pi * s)) if p else None for s, p in zip(t, present)]
    truth = ellipses(centres, [(9, 7)] * SHAPE[0])
    rng = np.random.default_rng(2)
    image = 40 + 6 * texture(rng, SHAPE)
    image[truth] = (120 + 12 * texture(rng, SHAPE))[truth]
    image += rng.normal(0, 4, SHAPE)
    return Volume(image.astype(np.float32), SPACING), truth, [5, 12, 19, 26]


class Comparison:
    """register, interpolate and auto on one phantom; Dice between the outermost drawn slices."""

    def __init__(self, phantom) -> None:
        image, self.truth, self.drawn = phantom
        annotation = annotate(image, self.truth, self.drawn)
        self.predictions = {
            name: make_engine(name).propagate(image, annotation) for name in ("register", "interpolate", "auto")
        }
        inside = slice(self.drawn[0], self.drawn[-1] + 1)
        self.dice = {
            name: dice(p.labels.array[inside] == 1, self.truth[inside]) for name, p in self.predictions.items()
        }

    @property
    def auto(self):
        return self.predictions["auto"]


@pytest.fixture(scope="module")
def shape_case() -> Comparison:
    return Comparison(shape_phantom())


@pytest.fixture(scope="module")
def moving_case() -> Comparison:
    return Comparison(moving_phantom())


# Reports -----------------------------------------------------------------------------------------
def test_with_one_drawn_slice_auto_fills_with_the_default_extrapolation_without_an_expected_dice():
    image, truth, _ = moving_phantom()
    prediction = make_engine("auto").propagate(image, annotate(image, truth, [16]))
    assert prediction.details[1]["choice"] == DEFAULT_EXTRAPOLATION == "refined"
    assert 1 not in prediction.expected_dice
    assert (prediction.labels.array == 1).sum() > truth[16].sum()  # it did propagate


def test_with_three_or_more_drawn_slices_auto_reports_an_expected_dice_and_a_choice(moving_case, shape_case):
    for case in (moving_case, shape_case):
        expected = case.auto.expected_dice[1]
        assert 0.0 <= expected <= 1.0
        assert case.auto.details[1]["choice"] in CHOICES


def test_auto_reports_an_expected_dice_per_label():
    image, truth, drawn = moving_phantom()
    other = np.zeros(SHAPE, bool)
    other[8:24, 4:14, 4:12] = True  # a box in a corner the moving ellipse never reaches
    labels = np.zeros(SHAPE, np.uint8)
    for z in drawn:
        labels[z][truth[z]] = 1
    for z in (9, 16, 23):
        labels[z][other[z]] = 2
    annotation = SparseAnnotation.from_labels(LabelVolume(image.with_array(labels)), axis=0)
    prediction = make_engine("auto").propagate(image, annotation)
    assert set(prediction.expected_dice) == {1, 2}
    assert all(0.0 <= d <= 1.0 for d in prediction.expected_dice.values())
    assert {prediction.details[v]["choice"] for v in (1, 2)} <= set(CHOICES)


# Choice ------------------------------------------------------------------------------------------
def test_the_shape_phantom_favours_interpolation(shape_case):
    assert shape_case.dice["interpolate"] > shape_case.dice["register"] + 0.05


def test_auto_is_as_good_as_the_better_engine_when_intensity_is_uninformative(shape_case):
    best = max(shape_case.dice["register"], shape_case.dice["interpolate"])
    assert shape_case.dice["auto"] >= best - DICE_SLACK
    assert shape_case.auto.details[1]["choice"] in ("interpolate", "fusion")


def test_the_moving_phantom_favours_registration(moving_case):
    assert moving_case.dice["register"] > moving_case.dice["interpolate"] + 0.05


def test_auto_follows_registration_on_a_textured_moving_structure(moving_case):
    # The bright ellipse is also what the envelope segmentation separates by intensity.
    assert moving_case.auto.details[1]["choice"] in ("register", "refined", "envelope")
    assert moving_case.dice["auto"] >= moving_case.dice["register"] - DICE_SLACK


def test_beyond_the_drawn_slices_auto_extrapolates_like_register_when_intensity_is_uninformative(shape_case):
    outside = [z for z in range(SHAPE[0]) if not shape_case.drawn[0] <= z <= shape_case.drawn[-1]]
    np.testing.assert_array_equal(
        shape_case.auto.labels.array[outside], shape_case.predictions["register"].labels.array[outside]
    )


def test_validation_reuses_the_registrations_of_the_final_run(moving_case):
    # Leaving a drawn slice out needs at most two pairs the final run never registered.
    register = moving_case.predictions["register"].counters["registrations"]
    extra = moving_case.auto.counters["registrations"] - register
    assert extra <= 2 * len(moving_case.drawn)


def test_auto_is_as_good_as_the_better_engine_over_the_whole_volume(shape_case):
    # Beyond the drawn slices auto extrapolates with register, whose stop rule is blind here:
    # it must not run on to the volume's edges.
    whole = {name: dice(p.labels.array == 1, shape_case.truth) for name, p in shape_case.predictions.items()}
    assert whole["auto"] >= max(whole["register"], whole["interpolate"]) - DICE_SLACK
