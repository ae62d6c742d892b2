"""Tests of slicer_support/preview_parts.py: drawn vs propagated vs low-confidence parts."""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.slicer_support.preview_parts import (
    drawn_slices,
    low_confidence_slices,
    report_confidences,
    split_preview,
)


def _case(axis=0):
    rng = np.random.default_rng(0)
    labels = np.zeros((10, 8, 8), np.uint8)
    labels[1:9, 2:6, 2:6] = 1
    labels[5, 0, 0] = 1  # a stray voxel, predicted
    drawn = np.zeros_like(labels)
    drawn[[2, 7]] = labels[[2, 7]]
    drawn[2, 3, 3] = 0  # the user's drawing differs from the result there
    order = [axis] + [a for a in range(3) if a != axis]
    back = np.argsort(order)
    del rng
    return np.transpose(labels, back), np.transpose(drawn, back)


def test_parts_are_disjoint_and_cover_the_result_with_drawn_slices_as_drawn():
    labels, drawn = _case()
    confidences = [None, 0.9, 1.0, 0.3, 0.8, 0.2, 0.9, 1.0, 0.4, None]
    parts = split_preview(labels, drawn, 0, confidences, threshold=0.5)
    assert parts.low_slices == (3, 5, 8)
    total = parts.drawn.astype(int) + parts.propagated + parts.low_confidence
    assert total.max() == 1
    assert np.array_equal(parts.drawn[[2, 7]], drawn[[2, 7]])  # exactly as drawn, not as predicted
    assert parts.propagated[[2, 7]].sum() == 0 and parts.low_confidence[[2, 7]].sum() == 0
    assert parts.low_confidence[[3, 5, 8]].any(axis=(1, 2)).all() and parts.low_confidence[[1, 4, 6]].sum() == 0
    expected = labels.astype(bool).copy()
    expected[[2, 7]] = drawn[[2, 7]].astype(bool)
    assert np.array_equal(parts.union().astype(bool), expected)


@pytest.mark.parametrize("axis", [1, 2])
def test_other_annotated_axes(axis):
    labels, drawn = _case(axis)
    parts = split_preview(labels, drawn, axis, [0.1] * 10, threshold=0.5)
    assert drawn_slices(parts.drawn, axis) == [2, 7]
    assert parts.propagated.sum() == 0  # every predicted slice is under the threshold
    assert set(parts.low_slices) == {1, 3, 4, 5, 6, 8}


def test_low_confidence_slices_skip_drawn_and_unknown():
    assert low_confidence_slices([0.2, None, 0.9, 0.1], 0.5, exclude=[3]) == [0]
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], not 2"):
        low_confidence_slices([0.2], 2)


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="differs"):
        split_preview(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)), 0)


def test_report_confidences():
    assert report_confidences({"slice_confidence": {"1": [None, 0.5]}}) == [None, 0.5]
    assert report_confidences({}) == []
