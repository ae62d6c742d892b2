"""The copy-nearest-drawn-mask baseline of the learning tests."""

from __future__ import annotations

import numpy as np

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.baselines import copy_nearest_drawn
from SAMFewShotLib.volume import LabelVolume, Volume


def _annotation(axis: int, empty=None) -> SparseAnnotation:
    labels = np.zeros((6, 4, 5), np.uint8)
    canonical = np.moveaxis(labels, axis, 0)
    canonical[1, 0, 0] = 1  # label 1 drawn on slices 1 and 4
    canonical[4, 1, 1] = 1
    canonical[4, 2, 2] = 2  # label 2 drawn on slice 4 only
    return SparseAnnotation.from_labels(LabelVolume(Volume(labels)), axis=axis, empty_slices=empty)


def test_every_slice_gets_its_nearest_drawn_mask_per_label():
    copied = copy_nearest_drawn(_annotation(0))
    assert copied.shape == (6, 4, 5) and copied.dtype == np.uint8
    for z in (0, 1, 2):  # nearer to (or tied towards) slice 1
        assert copied[z, 0, 0] == 1 and copied[z, 1, 1] == 0
    for z in (3, 4, 5):
        assert copied[z, 1, 1] == 1 and copied[z, 0, 0] == 0
    assert (copied[:, 2, 2] == 2).all()


def test_it_follows_the_annotated_axis_and_skips_declared_empty_slices():
    copied = copy_nearest_drawn(_annotation(2, empty={2: [0]}))
    canonical = np.moveaxis(copied, 2, 0)
    assert canonical[2, 0, 0] == 1 and canonical[3, 1, 1] == 1
    assert canonical[0, 2, 2] == 0 and canonical[1, 2, 2] == 2
