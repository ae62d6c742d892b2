"""Pseudo-label confidences, the copy source and SFR+ selection (SAMFewShotLib.sfr.pseudo_labels)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")  # the sfr extra
from SAMFewShotLib.sfr.pseudo_labels import (
    CopySource,
    PseudoLabel,
    boundary_confidence,
    box_correlation,
    make_source,
    probability_confidence,
    select_confident,
)
from SAMFewShotLib.volume import LabelVolume, Volume
from Testing.sfr.sfr_phantom import make_case


def test_boundary_confidence_grows_with_the_distance_in_mm():
    labels = np.zeros((1, 1, 9), dtype=np.uint8)
    labels[..., 4:] = 1
    confidence = boundary_confidence(labels, (1.0, 1.0, 2.0), tau_mm=2.0)
    assert confidence[0, 0, 3] == 0 and confidence[0, 0, 4] == 0
    np.testing.assert_allclose(confidence[0, 0, 5], 1 - np.exp(-1.0), rtol=1e-6)  # 2 mm away
    assert np.all(np.diff(confidence[0, 0, 4:]) > 0)
    assert boundary_confidence(np.zeros((3, 3, 3), np.uint8), (1, 1, 1)).min() == 1.0


def test_box_correlation_prefers_the_matching_image():
    image, labels = make_case(1)
    other, _ = make_case(2)
    assert box_correlation(image.array, image.array, labels.array, image.spacing_zyx) == pytest.approx(1.0)
    assert box_correlation(other.array, image.array, labels.array, image.spacing_zyx) < 0.9


def test_probability_confidence_is_zero_at_chance_and_one_when_sure():
    probabilities = np.stack([np.full((2, 2, 2), 0.5), np.full((2, 2, 2), 0.5)])
    probabilities[:, 0, 0, 0] = (0.0, 1.0)
    index, confidence, volume = probability_confidence(probabilities)
    assert index[0, 0, 0] == 1 and confidence[0, 0, 0] == 1.0 and confidence[1, 1, 1] == 0.0
    assert volume == 1.0  # the box of the label is its one voxel


def test_copy_source_puts_the_labels_on_the_image_grid():
    image, labels = make_case(0)
    target = Volume(np.zeros((12, 12, 12), np.float32), spacing=(4.0, 4.0, 4.0))
    pseudo = CopySource()(image, labels, target)
    assert pseudo.labels.volume.same_grid(target) and pseudo.confidence.shape == target.shape
    assert pseudo.labels.array.sum() > 0 and 0.0 <= pseudo.volume_confidence <= 1.0
    assert make_source("none").name == "none"
    with pytest.raises(ValueError, match="source must be one of"):
        make_source("magic")


def _pseudo(confidence_value, volume_confidence):
    volume = Volume(np.zeros((2, 2, 2), np.uint8))
    confidence = np.full((2, 2, 2), confidence_value, np.float32)
    confidence[0] = 0.1
    return PseudoLabel(LabelVolume(volume), confidence, volume_confidence, "test")


def test_select_confident_keeps_the_most_confident_fraction():
    pseudo = [_pseudo(0.9, 0.2), _pseudo(0.9, 0.8), _pseudo(0.9, 0.5), _pseudo(0.9, 0.1)]
    selection = select_confident(pseudo, 0.5)
    assert selection.indices == (1, 2)
    assert selection.weights[0][0].sum() == 0 and selection.weights[0][1].all()
    everything = select_confident(pseudo, None)
    assert everything.indices == (0, 1, 2, 3) and all(w.all() for w in everything.weights)
    assert select_confident(pseudo, 0.01).indices == (1,)
    with pytest.raises(ValueError, match="fraction"):
        select_confident(pseudo, 1.5)


def test_soft_selection_weights_voxels_by_their_confidence():
    pseudo = [_pseudo(0.9, 0.2), _pseudo(0.6, 0.8)]
    everything = select_confident(pseudo, None, soft=True)
    assert everything.indices == (0, 1)
    np.testing.assert_array_equal(everything.weights[1], pseudo[1].confidence)
    assert float(everything.weights[0][0].max()) == pytest.approx(0.1)
    assert select_confident(pseudo, 0.5, soft=True).indices == (1,)
