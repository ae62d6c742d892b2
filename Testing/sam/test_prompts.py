"""SAM-MPA auto-prompts from a coarse mask."""

import numpy as np
import pytest

from SAMFewShotLib.sam.prompts import MAX_LOGIT, component_prompts, interior_point, mask_prompt, soft_logits


def test_one_prompt_per_component_largest_first():
    mask = np.zeros((40, 50), bool)
    mask[5:10, 5:12] = True  # 35 px
    mask[20:35, 25:45] = True  # 300 px
    mask[0, 49] = True  # 1 px: too small
    prompts = component_prompts(mask)
    assert len(prompts) == 2
    big, small = prompts
    np.testing.assert_array_equal(big.box, [25, 20, 45, 35])  # XYXY
    np.testing.assert_allclose(big.points[0], [34.5, 27.0])  # centroid (X, Y)
    np.testing.assert_array_equal(big.labels, [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(big.points[1:], [[25, 20], [44, 20], [25, 34], [44, 34]])
    assert small.component.sum() == 35 and not (big.component & small.component).any()


def test_foreground_point_inside_a_c_shape():
    rows, cols = np.mgrid[:41, :41]
    radius = np.hypot(rows - 20, cols - 20)
    ring = (radius >= 10) & (radius <= 16) & ~((cols > 20) & (abs(rows - 20) < 5))
    r, c = interior_point(ring)
    assert ring[int(round(r)), int(round(c))]  # the centroid (20, ~19) is in the hole: moved inside
    (prompt,) = component_prompts(ring)
    x, y = prompt.points[0]
    assert ring[int(round(y)), int(round(x))]


def test_soft_logits_are_signed_and_bounded():
    mask = np.zeros((30, 30), bool)
    mask[10:20, 10:20] = True
    logits = soft_logits(mask)
    assert logits[15, 15] > 0.9 * MAX_LOGIT and logits[0, 0] < -0.9 * MAX_LOGIT
    assert np.abs(logits).max() <= MAX_LOGIT


def test_mask_prompt_follows_sams_resize_and_padding():
    pytest.importorskip("torch")
    # A 101 x 122 slice: SAM resizes it to 847 x 1024 and pads the bottom.
    mask = np.zeros((101, 122), bool)
    mask[:, 61:] = True  # right half
    prompt = mask_prompt(soft_logits(mask), input_size=(847, 1024)).numpy()
    assert prompt.shape == (1, 256, 256)
    assert prompt[0, 100, 200] > 0 > prompt[0, 100, 50]  # right half inside, left half outside
    assert prompt[0, 250, 200] < 0  # padding rows are background
