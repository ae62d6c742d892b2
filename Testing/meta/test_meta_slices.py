"""Slices for SSM-SAM: shifted copies, the support mask on the embedding grid, self-sampled points."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import numpy as np
from segment_anything.utils.transforms import ResizeLongestSide

from SAMFewShotLib.meta.self_sampling_prompt import sample_points
from SAMFewShotLib.meta.slices import prepare, prompt_grid_points, shifted, support_mask_grid
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


def test_the_support_mask_on_the_grid_is_the_covered_fraction_and_empty_in_the_padding(setup):
    _, _, truth, _, example = setup
    grid = support_mask_grid(truth[4], example.item, image_size=256)[0, 0].numpy()
    assert grid.shape == (16, 16) and 0.0 <= grid.min() and grid.max() == pytest.approx(1.0)
    # 48 x 32 slice -> 256 x 171 input: columns from 171 / 16 = 10.7 on are padding
    assert grid[:, 11:].max() == 0.0
    # the covered fraction: its sum is the mask's area in grid cells (48 / 16 * 256 / 48 = 3 pixels a cell)
    assert grid.sum() == pytest.approx(truth[4].sum() / (48 / 16) ** 2, rel=0.05)


def test_sampled_points_fall_inside_the_prior_and_in_the_band_around_it(setup):
    rng = np.random.default_rng(0)
    _, _, truth, _, _ = setup
    prior = truth[4]
    points, labels = sample_points(prior, 5, 7, rng)
    assert labels.tolist() == [1] * 5 + [0] * 7
    rows, cols = points.astype(int).T
    assert prior[rows[:5], cols[:5]].all() and not prior[rows[5:], cols[5:]].any()
    r, c = np.nonzero(prior)
    height, width = r.max() - r.min() + 1, c.max() - c.min() + 1
    assert (rows[5:] >= r.min() - height // 2).all() and (rows[5:] <= r.max() + height // 2).all()
    assert (cols[5:] >= c.min() - width // 2).all() and (cols[5:] <= c.max() + width // 2).all()
    again, _ = sample_points(prior, 5, 7, np.random.default_rng(0))
    np.testing.assert_array_equal(points, again)
    empty_points, empty_labels = sample_points(np.zeros_like(prior), 5, 3, rng)
    assert empty_labels.tolist() == [0, 0, 0] and empty_points.shape == (3, 2)


def test_points_map_to_the_embedding_grid_of_sams_input_frame(setup):
    _, _, truth, _, example = setup
    grid, labels = prompt_grid_points(truth[4], example.item, 256, 3, 2, np.random.default_rng(1))
    assert grid.shape == (1, 5, 2) and labels.tolist() == [[1, 1, 1, 0, 0]]
    points, _ = sample_points(truth[4], 3, 2, np.random.default_rng(1))
    xy = ResizeLongestSide(256).apply_coords(points[:, ::-1].copy(), (48, 32))
    np.testing.assert_allclose(grid[0].numpy(), (xy + 0.5) / 256 * 2 - 1, atol=1e-5)
    assert (grid.abs() <= 1).all()
