"""QC numbers: volumes in mL from the spacing, connected components, cohort flags."""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.batch.qc import LabelStats, cohort_flags, label_stats
from SAMFewShotLib.volume import LabelVolume, Segment, Volume


def labels_of(array: np.ndarray, spacing=(1.0, 1.0, 1.0), segments=()) -> LabelVolume:
    return LabelVolume(Volume(array, spacing=spacing), tuple(segments))


def test_the_volume_of_a_box_is_voxels_times_the_voxel_volume_in_ml():
    array = np.zeros((10, 12, 14), np.uint8)
    array[2:8, 3:8, 4:8] = 3  # 6 x 5 x 4 = 120 voxels
    stats = label_stats(labels_of(array, spacing=(0.5, 2.0, 3.0)))  # 3 mm^3 per voxel
    assert stats == [LabelStats(3, "Segment_3", 120, pytest.approx(0.36), 1)]


def test_components_use_26_connectivity():
    array = np.zeros((8, 8, 8), np.uint8)
    array[1, 1, 1] = array[2, 2, 2] = 1  # corner-touching: one component
    array[5, 5, 5] = 1  # apart: a second one
    array[6:8, 0:2, 6:8] = 2
    by_value = {s.value: s for s in label_stats(labels_of(array))}
    assert by_value[1].components == 2
    assert by_value[2].components == 1 and by_value[2].voxels == 8


def test_a_declared_segment_without_voxels_has_zero_stats_and_keeps_its_name():
    array = np.zeros((4, 4, 4), np.uint8)
    array[1, 1, 1] = 1
    stats = label_stats(labels_of(array, segments=[Segment(1, "liver"), Segment(4, "spleen")]))
    assert [(s.value, s.name, s.voxels, s.components) for s in stats] == [(1, "liver", 1, 1), (4, "spleen", 0, 0)]


def stats(volume_ml: float, value: int = 1, components: int = 1) -> LabelStats:
    return LabelStats(value, "organ", 1 if volume_ml else 0, volume_ml, components if volume_ml else 0)


def test_flags_empty_many_components_and_volumes_far_from_the_cohort_median():
    cohort = {
        "a": [stats(100.0)],
        "b": [stats(110.0)],
        "c": [stats(95.0, components=4)],
        "d": [stats(260.0)],
        "e": [stats(40.0)],
        "f": [stats(0.0)],
    }
    flags = cohort_flags(cohort)
    assert set(flags) == {("c", 1), ("d", 1), ("e", 1), ("f", 1)}
    assert flags[("c", 1)] == ["4 components"]
    assert flags[("d", 1)][0].startswith("volume 2.6 x the cohort median (100 mL)")
    assert flags[("e", 1)][0].startswith("volume 0.4 x")
    assert flags[("f", 1)] == ["empty"]


def test_no_median_flag_with_too_few_cases():
    assert cohort_flags({"a": [stats(10.0)], "b": [stats(100.0)]}) == {}


def test_a_volume_factor_of_one_or_less_is_refused():
    with pytest.raises(ValueError, match="volume_factor must be > 1"):
        cohort_flags({}, volume_factor=1.0)
