"""Tests of the interpolate engine (ITK morphological contour interpolation in a child process)."""

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.engines import interpolate
from SAMFewShotLib.engines.interpolate import InterpolateEngine, SlabJob, run_contour_interpolation
from SAMFewShotLib.metrics import dice
from SAMFewShotLib.progress import Cancelled, CancelToken
from SAMFewShotLib.volume import LabelVolume, Volume

SHAPE = (36, 44, 48)  # (z, y, x)
SPACING_XYZ = (0.9, 0.8, 2.0)


def ellipsoid(center, radii, shape=SHAPE):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii)) <= 1


def take(array, index, axis):
    """The slice(s) of a (z, y, x) array at ``index`` (int or list) along ``axis``."""
    return np.take(array, index, axis=axis)


def annotate(truths, slices, axis, empty_slices=None):
    """(image, annotation): label value v drawn from truths[v] on slices[v] along ``axis``."""
    labels = np.zeros(SHAPE, dtype=np.uint8)
    for value, truth in truths.items():
        for s in slices[value]:
            index = [slice(None)] * 3
            index[axis] = s
            labels[tuple(index)][truth[tuple(index)]] = value
    image = Volume(np.zeros(SHAPE, dtype=np.int16), spacing=SPACING_XYZ)
    annotation = SparseAnnotation.from_labels(
        LabelVolume(image.with_array(labels)), axis=axis, empty_slices=empty_slices
    )
    return image, annotation


# One shape per axis, long along the annotated axis.
AXIS_CASES = {
    0: (ellipsoid((18, 22, 23), (14, 15, 17)), [6, 18, 30]),
    1: (ellipsoid((18, 21, 24), (10, 17, 15)), [7, 20, 34]),
    2: (ellipsoid((17, 22, 24), (10, 14, 19)), [8, 23, 39]),
}


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_ellipsoid_on_three_slices(axis):
    truth, slices = AXIS_CASES[axis]
    image, annotation = annotate({1: truth}, {1: slices}, axis)
    prediction = InterpolateEngine().propagate(image, annotation)
    out = prediction.labels.array == 1
    assert prediction.labels.volume.same_grid(image)
    assert prediction.axis == axis
    inside = list(range(slices[0], slices[-1] + 1))
    assert dice(take(out, inside, axis), take(truth, inside, axis)) > 0.9
    outside = [s for s in range(SHAPE[axis]) if s not in inside]
    assert not take(out, outside, axis).any()
    for s in slices:
        assert np.array_equal(take(out, s, axis), take(truth, s, axis))
    # Every slice between is filled, not only the annotated ones.
    other = tuple(a for a in range(3) if a != axis)
    assert take(out, inside, axis).any(axis=other).all()
    assert prediction.counters["child_processes"] == 1


def test_slice_confidence_and_probability():
    truth, slices = AXIS_CASES[0]
    image, annotation = annotate({1: truth}, {1: slices}, 0)
    prediction = InterpolateEngine().propagate(image, annotation)
    confidence = prediction.slice_confidence[1]
    assert confidence.shape == (SHAPE[0],) and confidence.dtype == np.float32
    assert np.all(confidence[slices] == 1.0)
    assert np.all(confidence[: slices[0]] == 0.0) and np.all(confidence[slices[-1] + 1 :] == 0.0)
    half = (slices[0] + slices[1]) // 2
    between = confidence[slices[0] : half + 1]
    assert np.all(np.diff(between) < 0) and 0 < between[-1] < 1
    # 6 slices of 2 mm from the nearest annotated slice: 0.5 ** (12 / 10).
    assert confidence[slices[0] + 6] == pytest.approx(0.5 ** (12.0 / interpolate.CONFIDENCE_HALF_DISTANCE_MM))


def test_label_probability_is_binary_float32(monkeypatch):
    truth, slices = AXIS_CASES[0]
    image, annotation = annotate({1: truth}, {1: slices}, 0)
    captured = {}
    original = interpolate.per_label_prediction

    def capture(name, annotation, propagate_label, **kwargs):
        captured[1] = propagate_label(1)
        return original(name, annotation, propagate_label, **kwargs)

    monkeypatch.setattr(interpolate, "per_label_prediction", capture)
    InterpolateEngine().propagate(image, annotation)
    probability = captured[1].full(annotation.canonical_shape)
    assert captured[1].probability.dtype == np.float32 and probability.shape == annotation.canonical_shape
    assert set(np.unique(probability)) == {0.0, 1.0}


def test_two_labels_in_one_child():
    left = ellipsoid((16, 22, 13), (11, 12, 9))
    right = ellipsoid((20, 22, 35), (13, 14, 10))
    image, annotation = annotate({1: left, 2: right}, {1: [8, 16, 24], 2: [10, 20, 30]}, 0)
    prediction = InterpolateEngine().propagate(image, annotation)
    assert prediction.counters["child_processes"] == 1 and prediction.counters["labels_interpolated"] == 2
    for value, truth, (lo, hi) in ((1, left, (8, 24)), (2, right, (10, 30))):
        out = prediction.labels.array == value
        assert dice(out[lo : hi + 1], truth[lo : hi + 1]) > 0.9
        assert not out[:lo].any() and not out[hi + 1 :].any()


def test_declared_empty_slices():
    truth = ellipsoid((18, 22, 23), (16, 15, 17))
    # Drawn on 6 and 26; declared empty on 16 (inside the drawn range) and 30 (outside).
    image, annotation = annotate({1: truth}, {1: [6, 26]}, 0, empty_slices={1: [16, 30]})
    prediction = InterpolateEngine().propagate(image, annotation)
    out = prediction.labels.array == 1
    assert not out[16].any()  # the structure vanishes where the user said so
    assert not out[27:].any() and not out[:6].any()  # the empty slice 30 does not widen the range
    assert 0 < out[15].sum() < out[8].sum() and 0 < out[17].sum() < out[24].sum()  # shrinking towards 16
    assert np.array_equal(out[6], truth[6]) and np.array_equal(out[26], truth[26])
    confidence = prediction.slice_confidence[1]
    assert confidence[16] == 1.0 and confidence[30] == 1.0 and confidence[28] == 0.0


def test_adjacent_drawn_slices_are_key_slices():
    # The filter's own slice detection skips drawn slices with a drawn neighbour (here 6 and 7,
    # leaving 8..17 empty); the engine gives the filter every drawn slice.
    truth = ellipsoid((18, 22, 23), (14, 15, 17))
    image, annotation = annotate({1: truth}, {1: [6, 7, 18, 30]}, 0)
    out = InterpolateEngine().propagate(image, annotation).labels.array == 1
    assert out[8:18].any(axis=(1, 2)).all()
    assert dice(out[6:31], truth[6:31]) > 0.9


def test_single_slice_needs_no_child():
    truth = ellipsoid((18, 22, 23), (14, 15, 17))
    image, annotation = annotate({1: truth}, {1: [18]}, 0)
    prediction = InterpolateEngine().propagate(image, annotation)
    assert prediction.counters["child_processes"] == 0
    assert np.array_equal(prediction.labels.array, annotation.labels.array)


def test_grid_mismatch_is_refused():
    truth, slices = AXIS_CASES[0]
    _, annotation = annotate({1: truth}, {1: slices}, 0)
    with pytest.raises(ValueError, match="grid"):
        InterpolateEngine().propagate(Volume(np.zeros((4, 4, 4))), annotation)


# The child process protocol ---------------------------------------------------------------------
FAKE_CHILD = """
import json, os, sys, time
from pathlib import Path
import numpy as np

def deliver(job_dir):
    job = json.loads((job_dir / "job.json").read_text())
    for entry in job["slabs"]:
        np.save(job_dir / entry["output"], np.load(job_dir / entry["input"]))
    (job_dir / "done.json").write_text(json.dumps({{"count": len(job["slabs"])}}))

def main(argv):
    mode = {mode!r}
    if mode == "crash_after_delivery":
        deliver(Path(argv[0]))
        os.abort()
    if mode == "die_before_delivery":
        sys.stderr.write("boom: no result\\n")
        sys.stderr.flush()
        os._exit(3)
    if mode == "hang":
        time.sleep(120)
"""


def fake_child(tmp_path, monkeypatch, mode):
    script = tmp_path / f"fake_{mode}.py"
    script.write_text(textwrap.dedent(FAKE_CHILD.format(mode=mode)))
    monkeypatch.setattr(interpolate, "CHILD_SCRIPT", script)
    started = []

    class RecordingPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(interpolate.subprocess, "Popen", RecordingPopen)
    return started


def _jobs():
    slab = np.zeros((5, 6, 7), dtype=bool)
    slab[0, 2:4, 2:4] = slab[4, 2:5, 2:5] = True
    return [SlabJob(slab=slab, slices=[0, 4], spacing_xyz=(1.0, 1.0, 1.0))]


def test_result_accepted_when_child_dies_after_delivery(tmp_path, monkeypatch):
    fake_child(tmp_path, monkeypatch, "crash_after_delivery")
    results, statistics = run_contour_interpolation(_jobs())
    assert np.array_equal(results[0], _jobs()[0].slab)
    assert statistics["child_exit_code"] != 0


def test_clear_error_when_child_dies_before_delivery(tmp_path, monkeypatch):
    fake_child(tmp_path, monkeypatch, "die_before_delivery")
    with pytest.raises(RuntimeError, match=r"exit code 3\) before delivering.*boom: no result"):
        run_contour_interpolation(_jobs())


def test_cancel_kills_the_child(tmp_path, monkeypatch):
    started = fake_child(tmp_path, monkeypatch, "hang")
    token = CancelToken()
    threading.Timer(0.5, token.cancel).start()
    start = time.perf_counter()
    with pytest.raises(Cancelled):
        run_contour_interpolation(_jobs(), cancel=token)
    assert time.perf_counter() - start < 5
    assert len(started) == 1 and started[0].poll() is not None


ROBUSTNESS_SCRIPT = """
import hashlib, sys
import numpy as np
from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.engines.interpolate import InterpolateEngine
from SAMFewShotLib.volume import LabelVolume, Volume

zz, yy, xx = np.ogrid[:24, :32, :32]
truth = ((zz - 12) / 10.0) ** 2 + ((yy - 16) / 11.0) ** 2 + ((xx - 15) / 9.0) ** 2 <= 1
labels = np.zeros(truth.shape, dtype=np.uint8)
labels[[4, 12, 20]] = truth[[4, 12, 20]]
image = Volume(np.zeros(truth.shape, dtype=np.int16), spacing=(1.0, 1.0, 2.5))
annotation = SparseAnnotation.from_labels(LabelVolume(image.with_array(labels)), axis=0)
prediction = InterpolateEngine().propagate(image, annotation)
assert "itk.itkMorphologicalContourInterpolatorPython" not in sys.modules, "filter loaded in the caller"
print(hashlib.sha256(prediction.labels.array.tobytes()).hexdigest(), int(prediction.labels.array.sum()))
"""


def test_fresh_processes_exit_cleanly_and_agree():
    checksums = []
    for _ in range(8):
        done = subprocess.run(
            [sys.executable, "-c", ROBUSTNESS_SCRIPT], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        checksums.append(done.stdout.strip())
    assert len(set(checksums)) == 1
    assert int(checksums[0].split()[1]) > 0
