"""Tests of SAMFewShotLib.propagation.slice_flows.SliceFlows: memoised adjacent-slice fields."""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.propagation.slice_flows import SliceFlows

CROP = (slice(2, 14), slice(3, 15))


class RecordingRegistrar:
    """A registrar that records its calls and returns a field made from their number."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, tuple[float, float]]] = []

    def register(self, fixed: np.ndarray, moving: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
        self.calls.append((fixed.copy(), moving.copy(), spacing))
        return np.full((2, *fixed.shape), float(len(self.calls)), np.float32)


@pytest.fixture
def stack() -> np.ndarray:
    return np.random.default_rng(0).random((6, 16, 18)).astype(np.float32)


def test_a_field_is_computed_once_then_served_from_the_cache(stack):
    registrar = RecordingRegistrar()
    flows = SliceFlows(stack, (0.8, 0.9), registrar)
    first = flows.step(2, 3, CROP)
    again = flows.step(2, 3, CROP)
    assert len(registrar.calls) == 1
    assert flows.registrations == 1 and flows.cache_hits == 1
    np.testing.assert_array_equal(again, first)


def test_the_cache_tells_directions_and_crops_apart(stack):
    registrar = RecordingRegistrar()
    flows = SliceFlows(stack, (1.0, 1.0), registrar)
    flows.step(2, 3, CROP)
    flows.step(3, 2, CROP)
    flows.step(2, 3, (slice(0, 16), slice(0, 18)))
    assert flows.registrations == 3 and flows.cache_hits == 0


def test_the_target_slice_is_fixed_and_the_source_moving(stack):
    registrar = RecordingRegistrar()
    flows = SliceFlows(stack, (0.8, 0.9), registrar)
    flows.step(4, 3, CROP)
    fixed, moving, spacing = registrar.calls[0]
    np.testing.assert_array_equal(fixed, stack[3][CROP])
    np.testing.assert_array_equal(moving, stack[4][CROP])
    assert spacing == (0.8, 0.9)


@pytest.mark.parametrize("source, target", [(2, 4), (3, 3), (5, 1)])
def test_only_neighbouring_slices_are_registered(stack, source, target):
    flows = SliceFlows(stack, (1.0, 1.0), RecordingRegistrar())
    with pytest.raises(ValueError, match="not neighbours"):
        flows.step(source, target, CROP)
    assert flows.registrations == 0


class DifferenceRegistrar:
    """A deterministic registrar: the field is (fixed - moving, fixed + moving)."""

    name = "difference"

    def register(self, fixed: np.ndarray, moving: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
        return np.stack([fixed - moving, fixed + moving]).astype(np.float32)


def test_one_pool_serves_stacks_made_after_it_started(stack):
    from SAMFewShotLib.propagation.slice_flows import RegistrationPool, default_workers

    if default_workers() < 2:
        pytest.skip("needs fork and two cores")
    registrar = DifferenceRegistrar()
    with RegistrationPool(registrar, workers=2) as pool:
        first = SliceFlows(stack, (1.0, 1.0), registrar, pool=pool)
        first.prefetch([(0, 1), (1, 2), (2, 3)], CROP)
        later = SliceFlows(stack[:, ::-1].copy(), (1.0, 1.0), registrar, pool=pool)
        later.prefetch([(3, 2), (4, 3)], CROP)
        assert first.registrations == 3 and later.registrations == 2
        expected = registrar.register(later.stack[2][CROP], later.stack[3][CROP], (1.0, 1.0))
        np.testing.assert_array_equal(later.step(3, 2, CROP), expected)
        assert later.cache_hits == 1
        first.close()  # not the flows' pool: it stays usable
        later.prefetch([(0, 1), (1, 2)], CROP)
        assert later.registrations == 4
