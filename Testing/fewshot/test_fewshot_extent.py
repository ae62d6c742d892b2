"""Which slices the fewshot engine predicts (extent.py), with a predictor that reads a known truth."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.fewshot.extent import propagate_labels
from SAMFewShotLib.volume import LabelVolume, Volume

N = 30


class TruthPredictor:
    """Stands in for SlicePredictor: returns the truth of each (slice, label) and logs the calls."""

    def __init__(self, truth: dict[int, np.ndarray], values: list[int]):
        self.truth, self.values, self.calls = truth, values, []

    def predict(self, requests, *, progress=None, cancel=None):
        self.calls.append(sorted(requests))
        return {(z, i): self.truth[self.values[i]][z].astype(np.float32) for z, i in requests}


def annotation_of(truth: dict[int, np.ndarray], drawn: dict[int, list[int]], empty=None) -> SparseAnnotation:
    labels = np.zeros((N, 8, 8), np.uint8)
    for value, slices in drawn.items():
        for z in slices:
            labels[z][truth[value][z]] = value
    return SparseAnnotation.from_labels(LabelVolume(Volume(labels)), axis=0, empty_slices=empty)


def column(first: int, last: int, rows=slice(2, 5)) -> np.ndarray:
    """A structure present on slices first..last."""
    mask = np.zeros((N, 8, 8), bool)
    mask[first : last + 1, rows, 2:5] = True
    return mask


def test_between_the_drawn_slices_then_outward_in_batches_until_empty():
    truth = {1: column(5, 20)}
    predictor = TruthPredictor(truth, [1])
    result = propagate_labels(predictor, annotation_of(truth, {1: [10, 12, 15]}), [1], outward_batch=4)[1]
    assert predictor.calls[0] == [(z, 0) for z in (11, 13, 14)]  # the core range, not the drawn slices
    below = sorted({z for call in predictor.calls[1:] for z, _ in call if z < 10})
    above = sorted({z for call in predictor.calls[1:] for z, _ in call if z > 15})
    assert below == list(range(2, 10)) and above == list(range(16, 24))  # batches of 4 until an empty one
    assert result.details["stopped_at"] == {"below": 4, "above": 21}
    assert result.details["predicted_range"] == [5, 20]
    np.testing.assert_array_equal(result.full((N, 8, 8)) > 0.5, truth[1])
    assert result.slice_confidence[10] == 1.0 and result.slice_confidence[18] == 1.0
    assert result.slice_confidence[3] == 0.0


def test_a_slice_declared_empty_ends_the_label_there():
    truth = {1: column(0, 29)}
    predictor = TruthPredictor(truth, [1])
    annotation = annotation_of(truth, {1: [10, 12]}, empty={1: [7, 26]})
    result = propagate_labels(predictor, annotation, [1], outward_batch=3)[1]
    predicted = {z for call in predictor.calls for z, _ in call}
    assert predicted == {8, 9, 11} | set(range(13, 26))
    assert result.details["predicted_range"] == [8, 25]
    assert result.details["stopped_at"] == {"below": None, "above": None}


def test_labels_and_directions_share_each_batch():
    truth = {1: column(8, 12), 3: column(14, 18, rows=slice(5, 7))}
    predictor = TruthPredictor(truth, [1, 3])
    results = propagate_labels(predictor, annotation_of(truth, {1: [10], 3: [16]}), [1, 3], outward_batch=2)
    first_outward = predictor.calls[1]
    assert {(9, 0), (11, 0), (15, 1), (17, 1)} <= set(first_outward)
    for value in (1, 3):
        np.testing.assert_array_equal(results[value].full((N, 8, 8)) > 0.5, truth[value])


def test_bad_batch_settings_are_refused():
    truth = {1: column(5, 6)}
    with pytest.raises(ValueError, match="outward_batch"):
        propagate_labels(TruthPredictor(truth, [1]), annotation_of(truth, {1: [5]}), [1], outward_batch=0)
