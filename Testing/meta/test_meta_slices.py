"""Slices for SSM-SAM: shifted copies, the blurred support mask on the embedding grid, sampled points."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import numpy as np
from segment_anything.utils.transforms import ResizeLongestSide

from SAMFewShotLib.meta.slices import prepare, prompt_points, shifted, support_weights
from SAMFewShotLib.sam.model_loading import load_sam
from SAMFewShotLib.sam.preprocess import Preprocessing
from Testing.meta import meta_cases


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    sam = load_sam(meta_cases.small_sam_checkpoint(tmp_path_factory.mktemp("slices") / "small.pth"))[0]
    volume, truth = meta_cases.textured_case(2, shape=(8, 48, 32))
    prep = Preprocessing.for_volume(volume)
    return sam, volume, truth, prep, prepare(sam, volume, 0, 4, prep, truth[4])


def test_a_shifted_copy_moves_image_and_mask_together(setup):
    sam, volume, truth, prep, example = setup
    moved = shifted(sam, volume, 0, example, (3, -2), prep)
    np.testing.assert_array_equal(moved.mask[3:, :-2], truth[4][:-3, 2:])
    assert not moved.mask[:3].any() and moved.index == -1
    assert not moved.item.pixels.equal(example.item.pixels)
    unmoved = shifted(sam, volume, 0, example, (0, 0), prep)
    assert unmoved.item.pixels.equal(example.item.pixels) and unmoved.item.input_size == example.item.input_size


def test_support_weights_cover_the_mask_and_not_the_padding(setup):
    _, _, truth, _, example = setup
    weights = support_weights(truth[4], example.item, sigma=1.0, image_size=256)[0, 0].numpy()
    assert weights.shape == (16, 16) and weights.max() == pytest.approx(1.0)
    # 48 x 32 slice -> 256 x 171 input: columns from 171 / 16 = 10.7 on are padding, 2+ cells away is ~0
    assert weights[:, 13:].max() < 0.02
    rows, cols = np.nonzero(truth[4])
    centre = (int(rows.mean() * 256 / 48 / 16), int(cols.mean() * 256 / 48 / 16))
    assert weights[centre] > 0.8


def test_points_come_from_the_largest_component_in_sam_input_coordinates(setup):
    _, _, truth, _, example = setup
    coords, labels = prompt_points(truth[4], example.item, 256)
    assert labels.tolist() == [[1, 0, 0, 0, 0]]
    rows, cols = np.nonzero(truth[4])
    expected = ResizeLongestSide(256).apply_coords(np.array([[cols.mean(), rows.mean()]]), (48, 32))
    np.testing.assert_allclose(coords[0, 0].numpy(), expected[0], atol=1.0)
    assert prompt_points(np.zeros_like(truth[4]), example.item, 256) is None
