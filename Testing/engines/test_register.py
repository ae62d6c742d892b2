"""Tests of the register engine (make_engine("register"): TV-L1 slice registration + mask chaining).

Phantoms: bright textured ellipsoids with noise in a darker textured background, annotated on a
few slices; the engine sees only the image and the annotation.
"""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.engines import make_engine
from SAMFewShotLib.metrics import dice
from SAMFewShotLib.progress import Cancelled, CancelToken
from SAMFewShotLib.volume import LabelVolume, Segment, Volume
from Testing import phantoms

SHAPE = (32, 48, 56)  # (z, y, x)
SPACING = (0.8, 0.9, 2.5)  # (x, y, z) mm
ORIGIN = (-10.5, 22.25, 100.0)
#: An oblique grid: index x runs along -S, y along L, z along -P.
DIRECTION = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0, -1.0, 0.0, 0.0)

#: Two structures: label -> (centre, radii) in (z, y, x), and the slices drawn on axis 0.
LEFT = ((15, 24, 15), (9, 10, 9))
RIGHT = ((17, 24, 40), (10, 11, 10))
DRAWN = {3: [10, 15, 20], 7: [12, 17, 22]}
#: Label 7 is declared empty on a slice where the structure still is (its true end is 26).
EMPTY = {7: [25]}
#: Label 3's drawing on slice 15 has a notch the image does not show.
NOTCH = (slice(22, 27), slice(6, 12))


def ellipsoid(center, radii, shape=SHAPE) -> np.ndarray:
    return phantoms.ellipsoid(center, radii, shape)


render = phantoms.render  # structure ~120, background ~40 (both textured), noise sd 4


def draw(truths: dict[int, np.ndarray], slices: dict[int, list[int]], axis: int) -> np.ndarray:
    """Label map with truths[v] copied onto slices[v] along ``axis``."""
    labels = np.zeros(next(iter(truths.values())).shape, np.uint8)
    for value, truth in truths.items():
        for s in slices[value]:
            index = [slice(None)] * 3
            index[axis] = s
            labels[tuple(index)][truth[tuple(index)]] = value
    return labels


def between(array: np.ndarray, slices: list[int], axis: int = 0) -> np.ndarray:
    """The part of ``array`` from the first to the last of ``slices`` along ``axis``."""
    return np.take(array, range(slices[0], slices[-1] + 1), axis=axis)


class Run:
    """One register run on the two-label phantom with an oblique grid."""

    def __init__(self) -> None:
        self.truths = {3: ellipsoid(*LEFT), 7: ellipsoid(*RIGHT)}
        self.image = Volume(render(self.truths[3] | self.truths[7], seed=0), SPACING, ORIGIN, DIRECTION)
        labels = draw(self.truths, DRAWN, axis=0)
        labels[15][NOTCH] = 0
        self.drawn = labels
        segments = (Segment(3, "left", (1.0, 0.0, 0.0)), Segment(7, "right", (0.0, 0.0, 1.0)))
        self.annotation = SparseAnnotation.from_labels(
            LabelVolume(self.image.with_array(labels), segments), axis=0, empty_slices=EMPTY
        )
        self.calls: list[tuple[str, int, int]] = []
        self.prediction = make_engine("register").propagate(
            self.image, self.annotation, progress=lambda stage, done, total: self.calls.append((stage, done, total))
        )
        self.out = self.prediction.labels.array


@pytest.fixture(scope="module")
def run() -> Run:
    return Run()


# Labels ------------------------------------------------------------------------------------------
def test_both_labels_of_a_multi_label_annotation_are_propagated(run):
    assert set(np.unique(run.out)) == {0, 3, 7}
    for value, slices in DRAWN.items():
        assert dice(between(run.out == value, slices), between(run.truths[value], slices)) > 0.9


def test_drawn_slices_come_back_exactly_as_drawn(run):
    for value, slices in DRAWN.items():
        for s in slices:
            np.testing.assert_array_equal(run.out[s] == value, run.drawn[s] == value)
    assert not (run.out[15][NOTCH] == 3).any()  # the notch the image does not show stays


def test_slices_declared_empty_come_back_empty(run):
    assert run.truths[7][25].any()
    assert not (run.out[25] == 7).any()


# Grid --------------------------------------------------------------------------------------------
def test_the_prediction_keeps_the_image_geometry(run):
    volume = run.prediction.labels.volume
    assert volume.shape == SHAPE
    assert volume.same_grid(run.image)
    assert volume.spacing == SPACING and volume.origin == ORIGIN and volume.direction == DIRECTION


def test_the_prediction_keeps_the_segment_table(run):
    assert run.prediction.labels.segments == run.annotation.labels.segments


@pytest.mark.parametrize("axis", [1, 2])
def test_annotation_along_another_axis(axis):
    # An ellipsoid long along ``axis``, drawn on three slices of that axis.
    radii = [7, 7, 7]
    radii[axis] = 18 if axis == 2 else 15
    truth = ellipsoid((16, 24, 28), radii)
    first = [16, 24, 28][axis] - radii[axis]
    slices = [first + 5, first + radii[axis], first + 2 * radii[axis] - 5]
    image = Volume(render(truth, seed=axis), SPACING)
    annotation = SparseAnnotation.from_labels(
        LabelVolume(image.with_array(draw({1: truth}, {1: slices}, axis))), axis=axis
    )
    prediction = make_engine("register").propagate(image, annotation)
    assert prediction.axis == axis
    assert prediction.labels.volume.same_grid(image)
    out = prediction.labels.array == 1
    assert dice(between(out, slices, axis), between(truth, slices, axis)) > 0.9


# Counters, cancel, progress ----------------------------------------------------------------------
def test_counters_report_the_registrations(run):
    counters = run.prediction.counters
    # At least every adjacent pair between the outermost drawn slices of each label, each way.
    assert counters["registrations"] >= sum(2 * (s[-1] - s[0] - 2) for s in DRAWN.values())
    assert counters["registration_cache_hits"] >= 0 and counters["backend"] == "tvl1"
    assert run.prediction.seconds["registration"] > 0


def test_a_cancelled_token_stops_the_engine():
    truth = ellipsoid(*LEFT)
    image = Volume(render(truth, seed=3))
    labels = draw({1: truth}, {1: [10, 15, 20]}, axis=0)
    annotation = SparseAnnotation.from_labels(LabelVolume(image.with_array(labels)), axis=0)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        make_engine("register").propagate(image, annotation, cancel=token)


def test_progress_is_reported_with_increasing_done(run):
    done = [d for stage, d, total in run.calls if stage == "register: labels"]
    assert done == sorted(done) and len(set(done)) == len(done)
    stage, last, total = [c for c in run.calls if c[0] == "register: labels"][-1]
    assert last == total == 2


@pytest.mark.parametrize(
    "grid", [{"array": slice(None, 48)}, {"spacing": (0.8, 0.9, 3.0)}], ids=["shape", "spacing"]
)
def test_an_image_on_another_grid_is_rejected(grid):
    truth = ellipsoid(*LEFT)
    labels = draw({1: truth}, {1: [10, 15, 20]}, axis=0)
    annotation = SparseAnnotation.from_labels(LabelVolume(Volume(labels, SPACING)), axis=0)
    array = render(truth, seed=4)[:, :, grid.get("array", slice(None))]
    image = Volume(np.ascontiguousarray(array), grid.get("spacing", SPACING))
    with pytest.raises(ValueError, match="grid"):
        make_engine("register").propagate(image, annotation)
