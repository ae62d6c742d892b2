"""Tests of the register engine (make_engine("register"): DIS slice registration (the default) + mask chaining).

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
    assert counters["registration_cache_hits"] >= 0 and counters["backend"] == "dis"
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


class SpyRegistrar:
    """Records the shape of every registered pair; returns no displacement."""

    name = "spy"

    def __init__(self) -> None:
        self.shapes: list[tuple[tuple[int, int], tuple[int, int]]] = []
        self.spacings: list[tuple[float, float]] = []

    def register(self, fixed: np.ndarray, moving: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
        self.shapes.append((fixed.shape, moving.shape))
        self.spacings.append(tuple(spacing))
        return np.zeros((2, *fixed.shape), np.float32)


def clinical_slices(drawn: list[int]) -> tuple[Volume, SparseAnnotation, np.ndarray]:
    """A 14 x 512 x 512 CT-like phantom (0.6 mm pixels, 2 mm slices) with a 120 mm disc drawn on
    ``drawn``; returns (image, annotation, the disc)."""
    rows, cols = np.ogrid[:512, :512]
    disc = (rows - 250) ** 2 + (cols - 270) ** 2 <= 100**2
    truth = np.repeat(disc[None], 14, axis=0)
    truth[:2] = truth[12:] = False
    image = Volume(np.where(truth, 60, -100).astype(np.int16), spacing=(0.6, 0.6, 2.0))
    labels = np.zeros(truth.shape, np.uint8)
    labels[drawn] = truth[drawn]
    annotation = SparseAnnotation.from_labels(LabelVolume(image.with_array(labels)), axis=0)
    return image, annotation, truth


@pytest.mark.parametrize("engine_name", ["register", "auto"])
def test_a_512_pixel_slice_grid_is_registered_at_the_working_resolution(engine_name):
    image, annotation, truth = clinical_slices([4, 7, 10])
    engine = make_engine(engine_name)
    register = engine if engine_name == "register" else engine.register
    spy = SpyRegistrar()
    register.registrar, register.workers = spy, 1  # serial: the spy sees every registration
    prediction = engine.propagate(image, annotation)
    # The disc (201 px) plus its 25 % margins is 301 px of 0.6 mm = 180.6 mm, ~150 px of 1.2 mm.
    assert spy.shapes and all(fixed == moving == (150, 150) for fixed, moving in spy.shapes)
    assert all(np.allclose(s, (1.2, 1.2), atol=0.01) for s in spy.spacings), set(spy.spacings)
    # Each ordered slice pair once, also with auto's leave-one-slice-out runs.
    assert len(spy.shapes) == prediction.counters["registrations"]
    assert prediction.counters["working_grids"] == 1
    out = prediction.labels.array == 1
    assert out.shape == (14, 512, 512)
    assert dice(out[4:11], truth[4:11]) > 0.98
