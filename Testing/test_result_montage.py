"""The propagation QC montage: drawn slices framed white and filled, propagated slices outlined,
low-confidence slices framed orange, a confidence strip; written as a PNG, complete or absent."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.overlay import plane
from SAMFewShotLib.prediction import Prediction
from SAMFewShotLib.result_montage import (
    DRAWN_FRAME,
    LOW_CONFIDENCE_THRESHOLD,
    LOW_FRAME,
    PROPAGATED_FRAME,
    evenly_chosen,
    result_montage,
    write_result_montage,
)
from SAMFewShotLib.slicer_support.preview_parts import DEFAULT_CONFIDENCE_THRESHOLD
from SAMFewShotLib.volume import LabelVolume, Segment, Volume

SHAPE = (20, 32, 32)  # (z, y, x)
DRAWN = [5, 14]
LOW = [8, 9, 10, 11]  # propagated slices with confidence 0.2
RED = Segment(1, "box", (1.0, 0.0, 0.0))


def case(low=LOW):
    """A grey image, a 12 x 12 box on slices 3..16 predicted, drawn on DRAWN, axis 0."""
    rng = np.random.default_rng(0)
    image = Volume((100 + rng.normal(0, 1, SHAPE)).astype(np.float32), spacing=(1.0, 1.0, 2.0))
    box = np.zeros(SHAPE, np.uint8)
    box[3:17, 10:22, 10:22] = 1
    drawn = np.zeros_like(box)
    drawn[DRAWN] = box[DRAWN]
    annotation = SparseAnnotation.from_labels(LabelVolume(image.with_array(drawn), (RED,)), axis=0)
    confidence = np.zeros(SHAPE[0], np.float32)
    confidence[3:17] = 0.9
    confidence[list(low)] = 0.2
    confidence[DRAWN] = 1.0
    prediction = Prediction(
        labels=LabelVolume(image.with_array(box), (RED,)), slice_confidence={1: confidence},
        expected_dice={1: 0.87}, seconds={}, counters={}, axis=0,
    )
    return image, annotation, prediction


def frame_color(picture: np.ndarray, box) -> tuple:
    left, top, _, _ = box
    return tuple(int(v) for v in picture[top + 1, left + 1])


def tile_centre_row(picture: np.ndarray, box) -> np.ndarray:
    """The middle row of a tile's panel (inside the 3-pixel frame, above the caption)."""
    left, top, right, bottom = box
    return picture[top + 3 + (bottom - top - 3 - 3 - 12) // 2, left + 3:right - 3]


def is_red(pixel) -> bool:
    return int(pixel[0]) > int(pixel[1]) + 40


def test_drawn_slices_are_tiles_framed_white_and_filled():
    image, annotation, prediction = case()
    result = result_montage(image, annotation, prediction, tile_height=64)
    picture = np.asarray(result.picture)
    drawn = [t for t in result.tiles if t.kind == "drawn"]
    assert [t.slice for t in drawn] == DRAWN
    for t in drawn:
        assert frame_color(picture, t.box) == DRAWN_FRAME
        row = tile_centre_row(picture, t.box)
        middle = row[len(row) // 2]
        assert is_red(middle)  # the drawn label fills the box's interior


def test_propagated_slices_are_outlined_not_filled():
    image, annotation, prediction = case(low=[])
    result = result_montage(image, annotation, prediction, tile_height=64)
    picture = np.asarray(result.picture)
    propagated = [t for t in result.tiles if t.kind == "propagated"]
    assert len(propagated) == 8 and all(3 <= t.slice <= 16 for t in propagated)
    for t in propagated:
        assert frame_color(picture, t.box) == PROPAGATED_FRAME
        row = tile_centre_row(picture, t.box)
        red = [i for i, pixel in enumerate(row) if is_red(pixel)]
        # The box spans columns 10..21 of 32: its two edges are red, its interior grey.
        assert red and red[0] == pytest.approx(len(row) * 10 / 32, abs=2)
        assert red[-1] == pytest.approx(len(row) * 22 / 32, abs=2)
        assert not is_red(row[len(row) // 2])


def test_low_confidence_slices_are_flagged_orange():
    image, annotation, prediction = case()
    result = result_montage(image, annotation, prediction, tile_height=64)
    picture = np.asarray(result.picture)
    assert result.low_slices == LOW
    flagged = [t for t in result.tiles if t.low]
    assert flagged and all(t.slice in LOW and t.confidence == pytest.approx(0.2) for t in flagged)
    for t in result.tiles:
        expected = DRAWN_FRAME if t.kind == "drawn" else LOW_FRAME if t.slice in LOW else PROPAGATED_FRAME
        assert frame_color(picture, t.box) == expected
    strip = picture[-20:]  # the confidence strip: one column band per slice, low ones orange
    assert (strip == LOW_FRAME).all(axis=2).any()


def test_a_higher_threshold_flags_more_and_a_bad_one_is_refused():
    image, annotation, prediction = case()
    assert result_montage(image, annotation, prediction, tile_height=32, threshold=0.95).low_slices == [
        s for s in range(3, 17) if s not in DRAWN
    ]
    with pytest.raises(ValueError, match="threshold"):
        result_montage(image, annotation, prediction, threshold=1.5)


def test_the_threshold_is_the_slicer_preview_s():
    assert LOW_CONFIDENCE_THRESHOLD == DEFAULT_CONFIDENCE_THRESHOLD


def test_evenly_chosen_keeps_the_ends():
    assert evenly_chosen(list(range(10)), 3) == [0, 4, 9]  # 4.5 rounds half to even
    assert evenly_chosen([1, 2], 5) == [1, 2]
    assert evenly_chosen([1, 2], 0) == []


def test_other_axes_show_slices_along_the_annotated_axis():
    image, _, prediction = case()
    drawn = np.zeros(SHAPE, np.uint8)
    for x in (12, 18):
        drawn[:, :, x] = prediction.labels.array[:, :, x]
    along_x = SparseAnnotation.from_labels(LabelVolume(image.with_array(drawn), (RED,)), axis=2)
    confidence = {1: np.full(SHAPE[2], 0.9, np.float32)}
    on_x = Prediction(labels=prediction.labels, slice_confidence=confidence, expected_dice={}, seconds={},
                      counters={}, axis=2)
    result = result_montage(image, along_x, on_x, tile_height=40)
    assert [t.slice for t in result.tiles if t.kind == "drawn"] == [12, 18]
    assert all(10 <= t.slice <= 21 for t in result.tiles)


def test_a_prediction_on_another_grid_is_refused():
    image, annotation, prediction = case()
    other = Volume(np.zeros(SHAPE, np.float32), spacing=(2.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="grid"):
        result_montage(other, annotation, prediction)


def test_write_result_montage_writes_a_png_and_nothing_else(tmp_path):
    image, annotation, prediction = case()
    path = write_result_montage(tmp_path / "qc.png", image, annotation, prediction, engine="auto")
    assert Image.open(path).format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["qc.png"]


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    image, annotation, prediction = case()

    def fail(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        write_result_montage(tmp_path / "qc.png", image, annotation, prediction)
    assert list(tmp_path.iterdir()) == []


def test_slices_are_shown_as_slicer_shows_them():
    """A (-1, -1, 1) direction (a NIfTI stored in RAS) is shown turned by 180 degrees in-plane:
    anterior up and the patient's left on the right, as in Slicer's axial view."""
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    flipped = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)
    identity = (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    view, pixel_mm = plane(array, 0, 1, (1.0, 2.0, 3.0), flipped)
    np.testing.assert_array_equal(view, array[1][::-1, ::-1])
    assert pixel_mm == (2.0, 1.0)
    np.testing.assert_array_equal(plane(array, 0, 1, (1.0, 2.0, 3.0), identity)[0], array[1])
    np.testing.assert_array_equal(plane(array, 1, 2, (1.0, 2.0, 3.0), identity)[0], array[:, 2][::-1])  # z up
    # A coronal stack stored with z as its first index axis: the slices are (y, x) coronal planes.
    coronal = (1.0, 0, 0, 0, 0, -1.0, 0, 1.0, 0)  # columns: index x -> L, index y -> S, index z -> -P
    view, pixel_mm = plane(array, 0, 0, (1.0, 2.0, 3.0), coronal)
    np.testing.assert_array_equal(view, array[0][::-1])  # superior (index y) up
    assert pixel_mm == (2.0, 1.0)
