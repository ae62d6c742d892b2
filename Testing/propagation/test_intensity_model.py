"""Tests of SAMFewShotLib.propagation.intensity_model.IntensityModel."""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.propagation.intensity_model import IntensityModel

SHAPE = (40, 40)


def disk_slices(seed: int = 0, n: int = 2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` slices of a bright disk (values ~ 100 +- 5) on a dark background (~ 40 +- 5)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    images, masks = [], []
    for radius in range(10, 10 + n):
        mask = (rows - 20) ** 2 + (cols - 20) ** 2 <= radius**2
        image = np.where(mask, rng.normal(100, 5, SHAPE), rng.normal(40, 5, SHAPE)).astype(np.float32)
        images.append(image)
        masks.append(mask)
    return images, masks


def make_model(images: list[np.ndarray], masks: list[np.ndarray]) -> IntensityModel:
    """The model with the value range the register engine would give it (p0.5..p99.5)."""
    low, high = np.percentile(np.stack(images), (0.5, 99.5))
    return IntensityModel(images, masks, value_range=float(high - low))


@pytest.fixture(scope="module")
def model() -> IntensityModel:
    return make_model(*disk_slices())


def test_foreground_values_are_likely_inside(model):
    assert np.all(model.probability(np.array([95.0, 100.0, 105.0])) > 0.9)


def test_band_values_are_unlikely_inside(model):
    assert np.all(model.probability(np.array([35.0, 40.0, 45.0])) < 0.1)


@pytest.mark.parametrize("value", [-1000.0, 70.0, 1000.0])
def test_a_value_never_seen_gives_one_half(model, value):
    # -1000 and 1000 lie outside the learnt range; 70 inside it, in the gap no sample reached.
    assert model.probability(np.array([value]))[0] == pytest.approx(0.5)


def test_trim_never_grows_a_mask(model):
    rng = np.random.default_rng(1)
    images, _ = disk_slices(seed=2)
    soft = rng.random(SHAPE).astype(np.float32)
    trimmed = model.trim(soft, images[0])
    assert trimmed.shape == soft.shape and trimmed.dtype == np.float32
    assert np.all(trimmed <= soft)


def test_trim_keeps_foreground_and_removes_band_like_background(model):
    images, masks = disk_slices(seed=3)
    trimmed = model.trim(np.ones(SHAPE, np.float32), images[0])
    band_like = ~masks[0] & (np.abs(images[0] - 40) < 5)
    assert np.mean(trimmed[masks[0]] > 0.5) > 0.95
    assert np.mean(trimmed[band_like] > 0.5) < 0.05


def test_a_model_needs_a_non_empty_mask():
    images, masks = disk_slices()
    with pytest.raises(ValueError, match="non-empty mask"):
        make_model(images, [np.zeros_like(m) for m in masks])
