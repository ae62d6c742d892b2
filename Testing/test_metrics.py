"""Tests of SAMFewShotLib.metrics on hand-computed cases."""

import math
import time

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from SAMFewShotLib import metrics
from SAMFewShotLib.metrics import assd, dice, evaluate, hausdorff95, iou


def _cube(shape, start, size):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def test_cubes_with_known_overlap():
    a = _cube((12, 12, 12), (2, 2, 2), 4)  # 64 voxels
    b = _cube((12, 12, 12), (2, 2, 4), 4)  # shifted 2 along x: 32 shared
    assert dice(a, b) == pytest.approx(2 * 32 / 128)
    assert iou(a, b) == pytest.approx(32 / 96)
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    assert all(type(v) is float for v in evaluate(a, b, (1, 1, 1)).values())  # plain floats for JSON


def test_single_voxels_anisotropic_spacing():
    spacing = (2.5, 1.0, 0.7)
    a = np.zeros((8, 8, 12), dtype=bool)
    b = np.zeros_like(a)
    a[2, 3, 4] = True
    b[5, 3, 8] = True
    expected = math.hypot(3 * 2.5, 4 * 0.7)
    assert hausdorff95(a, b, spacing) == pytest.approx(expected)
    assert assd(a, b, spacing) == pytest.approx(expected)
    assert dice(a, b) == 0.0 and iou(a, b) == 0.0


def test_shifted_one_voxel_plane():
    # Planes are all surface; every voxel's nearest counterpart is straight across.
    spacing = (2.0, 0.5, 0.5)
    a = np.zeros((20, 16, 16), dtype=bool)
    b = np.zeros_like(a)
    a[10, 3:13, 3:13] = True
    b[13, 3:13, 3:13] = True
    assert hausdorff95(a, b, spacing) == pytest.approx(6.0)
    assert assd(a, b, spacing) == pytest.approx(6.0)


def test_shifted_two_voxel_slab():
    # Two voxels thick: all voxels are surface. A's layers z=10, 11 are 3 and 2 slices from B's
    # nearest layer (z=13), B's layers z=13, 14 are 2 and 3 from A's (z=11): half the distances
    # are 2 slices, half 3. HD95 = 3 slices, ASSD = 2.5 slices.
    spacing = (1.5, 0.8, 0.8)
    a = np.zeros((24, 16, 16), dtype=bool)
    b = np.zeros_like(a)
    a[10:12, 2:14, 2:14] = True
    b[13:15, 2:14, 2:14] = True
    assert hausdorff95(a, b, spacing) == pytest.approx(3 * 1.5)
    assert assd(a, b, spacing) == pytest.approx(2.5 * 1.5)


def test_surface_is_mask_minus_erosion():
    cube = _cube((8, 8, 8), (2, 2, 2), 4)
    shell = metrics.surface(cube)
    assert shell.sum() == 64 - 8  # the 2x2x2 core is interior
    assert not shell[3:5, 3:5, 3:5].any()
    # On the array border the outside counts as background.
    full = np.ones((3, 3, 3), dtype=bool)
    assert metrics.surface(full).sum() == 26


def _brute_force(a, b, spacing):
    pa = np.argwhere(metrics.surface(a)) * spacing
    pb = np.argwhere(metrics.surface(b)) * spacing
    d = cdist(pa, pb)
    d_ab, d_ba = d.min(axis=1), d.min(axis=0)
    hd95 = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    return hd95, (d_ab.sum() + d_ba.sum()) / (d_ab.size + d_ba.size)


def test_matches_brute_force_and_is_symmetric():
    rng = np.random.default_rng(0)
    spacing = np.array([3.0, 0.9, 1.1])
    zz, yy, xx = np.mgrid[:14, :20, :22]
    a = ((zz - 6) / 4.0) ** 2 + ((yy - 9) / 6.0) ** 2 + ((xx - 10) / 7.0) ** 2 <= 1
    b = ((zz - 7) / 5.0) ** 2 + ((yy - 11) / 5.0) ** 2 + ((xx - 11) / 6.5) ** 2 <= 1
    b &= rng.random(b.shape) > 0.05  # ragged surface
    hd, mean = _brute_force(a, b, spacing)
    assert hausdorff95(a, b, spacing) == pytest.approx(hd)
    assert assd(a, b, spacing) == pytest.approx(mean)
    forward, backward = evaluate(a, b, spacing), evaluate(b, a, spacing)
    assert forward == pytest.approx(backward)
    assert forward["dice"] == pytest.approx(dice(a, b)) and forward["iou"] == pytest.approx(iou(a, b))


def test_both_empty():
    empty = np.zeros((5, 6, 7), dtype=bool)
    assert evaluate(empty, empty, (1, 1, 1)) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert hausdorff95(empty, empty, (1, 1, 1)) == 0.0 and assd(empty, empty, (1, 1, 1)) == 0.0


@pytest.mark.parametrize("empty_first", [True, False])
def test_one_empty(empty_first):
    empty = np.zeros((5, 6, 7), dtype=bool)
    full = _cube(empty.shape, (1, 1, 1), 3)
    pair = (empty, full) if empty_first else (full, empty)
    result = evaluate(*pair, (1, 1, 1))
    assert result["dice"] == 0.0 and result["iou"] == 0.0
    assert math.isinf(result["hd95"]) and math.isinf(result["assd"])
    assert math.isinf(hausdorff95(*pair, (1, 1, 1))) and math.isinf(assd(*pair, (1, 1, 1)))


def test_crop_gives_the_same_result_fast_on_a_large_volume():
    spacing = (1.25, 0.6, 0.6)
    small_a = _cube((10, 12, 12), (2, 2, 2), 6)
    small_b = _cube((10, 12, 12), (3, 4, 3), 5)
    expected = evaluate(small_a, small_b, spacing)
    big_a = np.zeros((300, 320, 320), dtype=bool)
    big_b = np.zeros_like(big_a)
    big_a[150:160, 40:52, 250:262] = small_a
    big_b[150:160, 40:52, 250:262] = small_b
    start = time.perf_counter()
    result = evaluate(big_a, big_b, spacing)
    assert time.perf_counter() - start < 5.0
    assert result == pytest.approx(expected)


def test_structure_on_the_array_border():
    # The crop is clipped at the array; the border still counts as outside.
    a = _cube((6, 6, 6), (0, 0, 0), 3)
    b = _cube((6, 6, 6), (0, 0, 1), 3)
    hd, mean = _brute_force(a, b, np.ones(3))
    assert hausdorff95(a, b, (1, 1, 1)) == pytest.approx(hd)
    assert assd(a, b, (1, 1, 1)) == pytest.approx(mean)


def test_non_boolean_masks_count_non_zero():
    a = np.zeros((4, 4, 4), dtype=np.uint8)
    a[1:3, 1:3, 1:3] = 7
    assert dice(a, a > 0) == 1.0


def test_bad_arguments():
    a = np.zeros((4, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match="same shape"):
        dice(a, np.zeros((4, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match="3D"):
        iou(a[0], a[0])
    with pytest.raises(ValueError, match="positive"):
        hausdorff95(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        evaluate(a, a, (1.0, 1.0))
    with pytest.raises(ValueError, match="non-empty"):
        metrics.surface_distances(a, a, (1, 1, 1))
