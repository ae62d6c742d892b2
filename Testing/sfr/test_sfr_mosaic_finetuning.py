"""SAM's few-shot decoder fine-tuned on mosaics as a pseudo-label source, with a tiny random SAM
(cost and plumbing only: random weights say nothing about segmentation quality)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")  # the sfr extra
import torch

from SAMFewShotLib.sfr.mosaic_finetuning import SamSource
from Testing.sfr.sfr_phantom import make_case
from Testing.tiny_sam import build_tiny_sam


def test_sam_source_trains_on_mosaics_and_labels_an_unlabelled_volume():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    image, labels = make_case(0, shape=(16, 24, 24))
    other, _ = make_case(1, shape=(12, 24, 24))
    source = SamSource(build_tiny_sam(), iterations=6, device="cpu", grid=4)
    pseudo = source(image, labels, other)
    assert source.training.iterations == 6 and source.training.losses[-1] < source.training.losses[0]
    assert pseudo.labels.volume.same_grid(other) and set(np.unique(pseudo.labels.array)) <= {0, 1}
    assert pseudo.confidence.shape == other.shape and 0.0 <= pseudo.confidence.min() <= pseudo.confidence.max() <= 1.0
    assert 0.0 <= pseudo.volume_confidence <= 1.0 and pseudo.source == "sam"
    probabilities = source.probabilities(other)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)


def test_sam_source_refuses_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        SamSource()
    with pytest.raises(ValueError, match="iterations"):
        SamSource(build_tiny_sam(), iterations=0)
