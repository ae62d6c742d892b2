"""Multi-atlas label fusion on constructed cases where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.atlas.fusion import fuse_labels, local_weights, majority_vote, staple
from SAMFewShotLib.volume import LabelVolume, Segment, Volume

GRID = dict(spacing=(1.0, 2.0, 3.0), origin=(5.0, 6.0, 7.0))


def labels_of(array: np.ndarray) -> LabelVolume:
    return LabelVolume(Volume(array.astype(np.uint8), **GRID), (Segment(1, "a", (1.0, 0.0, 0.0)),))


def test_majority_takes_the_most_frequent_label_background_included():
    a = np.array([[[1, 1, 2, 0]]])
    b = np.array([[[1, 2, 2, 0]]])
    c = np.array([[[0, 2, 3, 1]]])
    np.testing.assert_array_equal(majority_vote([a, b, c]), [[[1, 2, 2, 0]]])


def test_majority_ties_go_to_the_first_atlas_when_it_is_tied_else_to_the_smallest_label():
    first = np.array([[[3, 0, 1]]])
    second = np.array([[[1, 2, 2]]])
    third = np.array([[[1, 2, 3]]])
    fourth = np.array([[[3, 0, 3]]])
    # voxel 0: 3 and 1 tie (2 each), the first atlas says 3; voxel 1: 0 and 2 tie, first says 0;
    # voxel 2: 3 wins outright (2 votes against 1 and 1)
    np.testing.assert_array_equal(majority_vote([first, second, third, fourth]), [[[3, 0, 3]]])
    # the first atlas not among the tied labels: the smallest tied label
    np.testing.assert_array_equal(majority_vote([np.array([[[5]]]), np.array([[[2]]]), np.array([[[2]]]),
                                                 np.array([[[1]]]), np.array([[[1]]])]), [[[1]]])


def test_staple_follows_reliable_raters_where_the_majority_of_noisy_ones_is_wrong():
    rng = np.random.default_rng(0)
    truth = np.zeros((20, 30, 30), np.uint8)
    truth[4:16, 5:25, 5:20] = 1
    truth[4:16, 5:25, 22:28] = 2
    perfect = [truth.copy(), truth.copy()]
    noisy = []
    for _ in range(3):
        rater = truth.copy()
        flip = rng.random(truth.shape) < 0.35
        rater[flip] = rng.integers(0, 3, int(flip.sum()))
        noisy.append(rater)
    raters = noisy + perfect  # noisy first: they also win majority ties
    majority_errors = int((majority_vote(raters) != truth).sum())
    staple_errors = int((staple(raters) != truth).sum())
    assert majority_errors > 100
    assert staple_errors < majority_errors / 10


def test_local_weighted_voting_trusts_the_atlas_that_matches_the_target_locally():
    rng = np.random.default_rng(1)
    shape = (8, 20, 40)
    target = rng.normal(100.0, 20.0, shape)
    truth = np.zeros(shape, np.uint8)
    truth[2:6, 5:15, 5:35] = 1
    # left half: atlas 0 matches the target and is right, atlases 1 and 2 are wrong and differ;
    # right half: the other way round
    left = np.zeros(shape, bool)
    left[..., :20] = True
    images, maps = [], []
    for i in range(3):
        good = left if i == 0 else ~left
        image = np.where(good, target, target + rng.normal(0.0, 60.0, shape))
        wrong = truth.copy()
        wrong[~good] = 0
        images.append(Volume(image.astype(np.float32), **GRID))
        maps.append(labels_of(np.where(good, truth, wrong)))
    target_volume = Volume(target.astype(np.float32), **GRID)
    local = fuse_labels(maps, "local", images=images, target=target_volume)
    majority = fuse_labels(maps, "majority")
    # away from the halves' boundary (x = 20) by 3 sigma of the 6 mm neighbourhood (3 mm voxels along x)
    inner = (Ellipsis, np.r_[0:14, 26:40])
    assert (majority.array[inner] != truth[inner]).sum() > 200
    assert (local.array[inner] == truth[inner]).all()


def test_local_weights_prefer_the_matching_image():
    target = np.random.default_rng(2).normal(size=(6, 6, 6))
    same, other = local_weights([target, target + 1.0], target, (1.0, 1.0, 1.0))
    assert (same > 100 * other).all()


def test_fusion_keeps_grid_and_segments_and_a_single_atlas_is_returned_as_is():
    maps = [labels_of(np.full((2, 3, 4), v)) for v in (1, 1, 0)]
    fused = fuse_labels(maps, "staple")
    assert fused.volume.same_grid(maps[0].volume) and fused.segments == maps[0].segments
    assert (fused.array == 1).all()
    assert fuse_labels(maps[:1], "local") is maps[0]  # one atlas: nothing to fuse, no images needed


@pytest.mark.parametrize(
    "method, kwargs, message",
    [
        ("vote", {}, "Fusion must be one of majority, staple, local, not 'vote'"),
        ("local", {}, "needs the target and one warped atlas image per label map"),
    ],
)
def test_bad_fusion_arguments(method, kwargs, message):
    maps = [labels_of(np.zeros((2, 2, 2))), labels_of(np.ones((2, 2, 2)))]
    with pytest.raises(ValueError, match=message):
        fuse_labels(maps, method, **kwargs)


def test_label_maps_on_different_grids_are_refused():
    other = LabelVolume(Volume(np.zeros((2, 2, 2), np.uint8), spacing=(1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="atlas 1 label map grid"):
        fuse_labels([labels_of(np.zeros((2, 2, 2))), other], "majority")
