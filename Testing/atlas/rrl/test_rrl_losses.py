"""Losses of the joint registration-segmentation training."""

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.atlas.rrl.losses import dice_loss, ncc_loss, segmentation_loss, smoothness_loss


def _image(seed=0, shape=(1, 1, 12, 12, 12)):
    torch.manual_seed(seed)
    return torch.nn.functional.avg_pool3d(torch.rand(shape), 3, stride=1, padding=1)


def test_ncc_is_near_zero_for_identical_images_and_ignores_the_intensity_scale():
    image = _image()
    same = float(ncc_loss(image, image, window=5))
    assert same < 0.01
    assert float(ncc_loss(image, 3.0 * image + 2.0, window=5)) == pytest.approx(same, abs=1e-5)
    assert float(ncc_loss(0.01 * image, 0.01 * image, window=5)) == pytest.approx(same, abs=1e-5)


def test_ncc_grows_with_misalignment():
    image = _image()
    shifted = torch.roll(image, 2, dims=4)
    other = _image(seed=1)
    aligned = float(ncc_loss(image, image, 5))
    assert aligned < float(ncc_loss(image, shifted, 5)) < 1.0
    assert float(ncc_loss(image, other, 5)) > aligned + 0.3


def test_ncc_refuses_even_window_and_shape_mismatch():
    image = _image()
    with pytest.raises(ValueError, match="odd"):
        ncc_loss(image, image, window=4)
    with pytest.raises(ValueError, match="shape"):
        ncc_loss(image, image[..., :-1], window=3)


def test_smoothness_is_zero_for_translation_and_counts_gradients():
    flow = torch.zeros(1, 3, 6, 6, 6)
    flow[:, 0] = 2.5
    assert float(smoothness_loss(flow)) == 0.0
    ramp = torch.zeros(1, 3, 6, 6, 6)
    ramp[:, 2] = torch.arange(6.0)  # dx grows by 1 voxel per voxel along x
    # squared difference 1 on the x-channel along x only: mean over 3 channels / 3 directions
    assert float(smoothness_loss(ramp)) == pytest.approx(1.0 / 9.0)


def test_dice_loss_zero_for_identical_one_when_disjoint():
    labels = torch.zeros(1, 3, 4, 4, 4)
    labels[:, 0] = 1.0
    labels[:, 0, :2] = 0.0
    labels[:, 1, :2] = 1.0
    labels[:, 0, 3] = 0.0
    labels[:, 2, 3] = 1.0
    assert float(dice_loss(labels, labels)) == pytest.approx(0.0, abs=1e-6)
    swapped = labels[:, [0, 2, 1]]
    assert float(dice_loss(labels, swapped)) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="Shapes"):
        dice_loss(labels, labels[:, :2])


def test_segmentation_loss_prefers_the_right_logits():
    target = torch.zeros(1, 2, 4, 4, 4)
    target[:, 1, :2] = 1.0
    target[:, 0, 2:] = 1.0
    right = (target * 2 - 1) * 5.0
    assert float(segmentation_loss(right, target)) < float(segmentation_loss(-right, target))
