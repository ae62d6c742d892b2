"""SAM-MPA's support-driven propagation (propagation/support_clusters.py, support_propagation.py,
and the k-centroid support of mask_chain.py).

Phantom: two appearance regimes interleaved along z (even slices: a bright square top-left; odd
slices: a bright bar bottom-right). The drawn slices are 2 (even) and 5 (odd), each with its own
mask, so slice 3 is nearest to slice 2 along z but in the cluster of slice 5, and slice 4 the
other way round. A registrar returning no displacement makes every carried mask its centre's
drawn mask, so the source of each slice's mask can be read off.
"""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.propagation.mask_chain import ChainSettings, propagate_label_masks
from SAMFewShotLib.propagation.slice_flows import SliceFlows
from SAMFewShotLib.propagation.support_clusters import assign_to_centres, support_clusters, unit_rows
from SAMFewShotLib.propagation.support_propagation import centre_masks

N, SIZE = 8, 32
DRAWN = (2, 5)
WHOLE = (slice(0, SIZE), slice(0, SIZE))


class StillRegistrar:
    """No displacement, counting its calls."""

    name = "still"

    def __init__(self) -> None:
        self.calls = 0

    def register(self, fixed, moving, spacing):
        self.calls += 1
        return np.zeros((2, *fixed.shape), np.float32)


def interleaved_stack(seed: int = 0) -> np.ndarray:
    """(N, SIZE, SIZE) float32 in [0, 1]: even slices one regime, odd slices the other."""
    rng = np.random.default_rng(seed)
    stack = 0.1 + 0.02 * rng.standard_normal((N, SIZE, SIZE))
    stack[0::2, 4:14, 4:14] = 0.9
    stack[1::2, 20:28, 8:30] = 0.9
    return np.clip(stack, 0, 1).astype(np.float32)


def drawn_masks(stack: np.ndarray) -> dict[int, np.ndarray]:
    return {z: stack[z] > 0.5 for z in DRAWN}


@pytest.fixture
def flows():
    stack = interleaved_stack()
    with SliceFlows(stack, (1.0, 1.0), StillRegistrar(), workers=1) as still:
        yield still


def test_assign_to_centres_picks_the_nearest_centre_in_cosine_distance():
    unit = unit_rows(np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]]))
    np.testing.assert_array_equal(assign_to_centres(unit, [0, 1]), [0, 1, 0, 1])


def test_interleaved_regimes_join_the_centre_of_their_regime_not_the_nearest_slice():
    assigned = support_clusters(interleaved_stack(), list(DRAWN))
    assert assigned == {z: (2 if z % 2 == 0 else 5) for z in range(N)}


@pytest.mark.parametrize("mode", ["kcentroid", "kcentroid-direct"])
def test_each_slice_takes_its_centres_mask(flows, mode):
    drawn = drawn_masks(flows.stack)
    masks, assigned = centre_masks(flows.stack, drawn, [0, 1, 3, 4, 6, 7], flows, WHOLE, mode)
    for z, mask in masks.items():
        np.testing.assert_array_equal(mask > 0.5, drawn[assigned[z]])
    assert sorted(masks) == [0, 1, 3, 4, 6, 7]
    assert assigned[3] == 5 and assigned[4] == 2


def test_direct_registers_each_centre_onto_each_slice_once(flows):
    drawn = drawn_masks(flows.stack)
    centre_masks(flows.stack, drawn, [3, 4], flows, WHOLE, "kcentroid-direct")
    centre_masks(flows.stack, drawn, [3, 4], flows, WHOLE, "kcentroid-direct")
    assert flows.registrar.calls == 2 and flows.registrations == 2


def test_a_slice_declared_empty_between_it_and_its_centre_is_not_crossed(flows):
    masks, _ = centre_masks(flows.stack, drawn_masks(flows.stack), [1, 4, 7], flows, WHOLE, "kcentroid", barriers={3})
    assert sorted(masks) == [7]  # 1's centre (5) and 4's centre (2) lie behind slice 3, 7's (5) does not


def test_an_unknown_mode_is_refused(flows):
    with pytest.raises(ValueError, match="'nearest'"):
        centre_masks(flows.stack, drawn_masks(flows.stack), [3], flows, WHOLE, "nearest")


def test_the_kcentroid_chain_fills_slices_from_their_centre_where_nearest_fuses_neighbours(flows):
    drawn = drawn_masks(flows.stack)
    nearest = propagate_label_masks(flows.stack, drawn, set(), flows, WHOLE, ChainSettings())
    clustered = propagate_label_masks(flows.stack, drawn, set(), flows, WHOLE, ChainSettings(support="kcentroid"))
    assert nearest.centres is None
    assert clustered.centres is not None and clustered.centres[3] == 5 and clustered.centres[4] == 2
    np.testing.assert_array_equal(clustered.probability[3] > 0.5, drawn[5])
    np.testing.assert_array_equal(clustered.probability[4] > 0.5, drawn[2])
    # nearest: slice 3 is 2/3 slice 2's mask + 1/3 slice 5's, so it looks like slice 2's
    np.testing.assert_array_equal(nearest.probability[3] > 0.5, drawn[2])
    for z in DRAWN:  # drawn slices stay as drawn
        np.testing.assert_array_equal(clustered.probability[z], drawn[z])


def test_with_one_drawn_slice_kcentroid_is_nearest(flows):
    drawn = {2: flows.stack[2] > 0.5}
    nearest = propagate_label_masks(flows.stack, drawn, set(), flows, WHOLE, ChainSettings())
    clustered = propagate_label_masks(flows.stack, drawn, set(), flows, WHOLE, ChainSettings(support="kcentroid"))
    np.testing.assert_array_equal(nearest.probability, clustered.probability)
    assert clustered.centres is None


def test_chain_settings_refuse_an_unknown_support():
    with pytest.raises(ValueError, match="'closest'"):
        ChainSettings(support="closest")
