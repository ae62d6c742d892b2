"""Tests of SAMFewShotLib.propagation.mask_chain: chained propagation of one label's drawn masks.

Phantoms are canonical stacks (n_slices, rows, cols): a bright textured structure with noise in a
darker textured background, beside a distractor of a third intensity, registered with TV-L1
optical flow. The chain is never told where the structure ends.
"""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.metrics import dice
from SAMFewShotLib.propagation.mask_chain import ChainSettings, propagate_label_masks, shrink_to_area
from SAMFewShotLib.propagation.slice_flows import SliceFlows
from SAMFewShotLib.propagation.slice_registration import OpticalFlowRegistrar
from Testing import phantoms

SHAPE = (32, 56, 56)  # (slices, rows, cols)
#: The ellipsoid: centre and radii (slices, rows, cols); it spans slices 7..25.
CENTER, RADII = (16, 28, 26), (9, 13, 11)
FIRST, LAST = 7, 25
DRAWN = (11, 16, 21)
#: Tolerance (slices) of the stop rule around the true end.
STOP_TOLERANCE = 2


def ellipsoid(center, radii, shape=SHAPE) -> np.ndarray:
    return phantoms.ellipsoid(center, radii, shape)


def render(truth: np.ndarray, seed: int) -> np.ndarray:
    """Intensities: structure ~120, background ~40, distractor ~80 (each textured), noise sd 4."""
    return phantoms.render(truth, seed, distractor=ellipsoid((16, 28, 47), (12, 6, 5), truth.shape))


def flows_of(image: np.ndarray) -> SliceFlows:
    return SliceFlows(np.clip((image - 20) / 140, 0, 1).astype(np.float32), (1.0, 1.0), OpticalFlowRegistrar())


def crop_around(truth: np.ndarray, margin: int = 8) -> tuple[slice, slice]:
    rows = np.flatnonzero(truth.any(axis=(0, 2)))
    cols = np.flatnonzero(truth.any(axis=(0, 1)))
    return (
        slice(max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, truth.shape[1])),
        slice(max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, truth.shape[2])),
    )


class Phantom:
    def __init__(self, truth: np.ndarray, seed: int) -> None:
        self.truth = truth
        self.image = render(truth, seed)
        self.flows = flows_of(self.image)
        self.crop = crop_around(truth)

    def drawn(self, slices=DRAWN) -> dict[int, np.ndarray]:
        return {z: self.truth[z][self.crop] for z in slices}

    def propagate(self, slices=DRAWN, empty=(), flows=None, only=None):
        return propagate_label_masks(
            self.image, self.drawn(slices), set(empty), flows or self.flows, self.crop, ChainSettings(), only=only
        )

    def inside(self, result) -> np.ndarray:
        """(n, rows, cols) bool prediction on the full slice grid."""
        out = np.zeros(self.truth.shape, bool)
        out[:, self.crop[0], self.crop[1]] = result.probability > 0.5
        return out


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return Phantom(ellipsoid(CENTER, RADII), seed=0)


@pytest.fixture(scope="module")
def full(phantom):
    return phantom.propagate()


def extent(inside: np.ndarray) -> tuple[int, int]:
    present = np.flatnonzero(inside.any(axis=(1, 2)))
    return int(present[0]), int(present[-1])


# Between drawn slices ----------------------------------------------------------------------------
def test_between_drawn_slices_the_chain_follows_the_structure(phantom, full):
    between = slice(DRAWN[0], DRAWN[-1] + 1)
    assert dice(phantom.inside(full)[between], phantom.truth[between]) > 0.9


def test_drawn_slices_are_kept_with_full_confidence(phantom, full):
    for z in DRAWN:
        np.testing.assert_array_equal(full.probability[z] > 0.5, phantom.truth[z][phantom.crop])
    assert np.all(full.confidence[list(DRAWN)] == 1.0)


# Stop rule ---------------------------------------------------------------------------------------
def test_the_outward_chain_stops_near_the_ends_of_the_ellipsoid(phantom, full):
    low, high = extent(phantom.inside(full))
    assert abs(low - FIRST) <= STOP_TOLERANCE and abs(high - LAST) <= STOP_TOLERANCE
    assert full.stopped_at["low"] == low and full.stopped_at["high"] == high


def test_the_outward_chain_does_not_reach_the_volume_edges(phantom, full):
    inside = phantom.inside(full)
    assert not inside[: FIRST - STOP_TOLERANCE].any() and not inside[LAST + STOP_TOLERANCE + 1 :].any()
    assert full.stopped_at["low"] is not None and full.stopped_at["high"] is not None


def test_the_intensity_stop_rule_ends_a_structure_of_constant_area():
    # A cylinder: the drawn areas do not shrink outward, so only the image can end the chain.
    truth = np.zeros(SHAPE, bool)
    truth[6:26] = ellipsoid((0, 28, 26), (1000, 11, 10))[6:26]
    cylinder = Phantom(truth, seed=1)
    low, high = extent(cylinder.inside(cylinder.propagate()))
    assert abs(low - 6) <= STOP_TOLERANCE and abs(high - 25) <= STOP_TOLERANCE


def test_a_slice_declared_empty_stops_the_chain(phantom):
    result = phantom.propagate(empty=(23,))
    inside = phantom.inside(result)
    assert inside[22].any()  # the chain ran up to the empty slice ...
    assert not inside[23:].any()  # ... and not through it, although the structure goes on to 25
    assert result.confidence[23] == 1.0


# only= -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("only", [9, 13, 19, 23])  # below, between (twice), above the drawn slices
def test_only_matches_the_full_computation_on_that_slice(phantom, full, only):
    result = phantom.propagate(only=only)
    np.testing.assert_allclose(result.probability[only], full.probability[only], atol=1e-6)
    assert (result.probability[only] > 0.5).any()


def test_only_computes_just_the_requested_slice(phantom, full):
    fresh = flows_of(phantom.image)
    result = phantom.propagate(flows=fresh, only=13)
    others = [z for z in range(SHAPE[0]) if z not in DRAWN and z != 13]
    assert not result.probability[others].any()
    # Chains from 11 up to 13 and from 16 down to 13: five registrations.
    assert fresh.registrations == 5 < phantom.flows.registrations


# shrink_to_area ----------------------------------------------------------------------------------
def _disk(radius: float, shape=(40, 40)) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return ((rows - 20) ** 2 + (cols - 20) ** 2 <= radius**2).astype(np.float32)


@pytest.mark.parametrize("area", [1, 100, 250, 317, 1000])
def test_shrink_to_area_never_grows_a_mask(area):
    soft = _disk(10) * np.random.default_rng(area).uniform(0.6, 1.0, (40, 40)).astype(np.float32)
    shrunk = shrink_to_area(soft, area)
    assert np.all(shrunk <= soft)


def test_shrink_to_area_keeps_a_mask_that_already_fits():
    soft = _disk(10)  # 317 pixels
    np.testing.assert_array_equal(shrink_to_area(soft, 317), soft)


def test_shrink_to_area_erodes_from_the_edge():
    shrunk = shrink_to_area(_disk(10), 100) > 0.5
    assert shrunk[20, 20] and not shrunk[20, 30] and not shrunk[10, 20]


@pytest.mark.parametrize("mask", ["square", "disk"])
def test_shrink_to_area_erodes_to_at_most_the_area(mask):
    if mask == "square":
        soft = np.zeros((40, 40), np.float32)
        soft[10:30, 10:30] = 1.0
        area = 150
    else:
        soft, area = _disk(10), 200
    assert (shrink_to_area(soft, area) > 0.5).sum() <= area
