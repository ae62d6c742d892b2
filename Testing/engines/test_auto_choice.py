"""auto's choice between its candidates: ``refined`` must win the leave-one-out validation by the
damage refinement does to a correct mask (``refinement_reliability``), since the left-out slices
lie twice as far from the drawn ones as any slice of the result (README "Clinical scale": the
clinical liver validated refined 0.80 vs register 0.71, yet refinement lowered it 0.940 -> 0.920)."""

from __future__ import annotations

import numpy as np

from SAMFewShotLib.engines.auto import choose
from SAMFewShotLib.propagation.intensity_refinement import refinement_reliability
from Testing.propagation.test_intensity_refinement import _rimmed

LIVER_LIKE = {"register": 0.705, "refined": 0.804, "interpolate": 0.58, "fusion": 0.63}


def test_refinement_that_damages_correct_edges_must_win_by_that_damage():
    image, drawn = _rimmed(rim=True)  # the drawn edge is not where the intensities change
    reliability = refinement_reliability(image, drawn, 160.0, slice_mm=3.0)
    assert reliability is not None and 1.0 - reliability > LIVER_LIKE["refined"] - LIVER_LIKE["register"]
    assert choose(LIVER_LIKE, reliability) == "register"


def test_reliable_refinement_keeps_its_validated_win():
    image, drawn = _rimmed(rim=False)
    assert choose(LIVER_LIKE, refinement_reliability(image, drawn, 160.0, slice_mm=3.0)) == "refined"
    assert choose(LIVER_LIKE, None) == "refined"  # nothing to measure the damage with
    assert choose({}, 0.5) is None
    assert choose({"register": 0.9, "interpolate": 0.95}, 0.0) == "interpolate"


def test_choice_is_the_best_score_when_refinement_is_perfect():
    scores = dict(zip(("register", "refined", "fusion"), np.linspace(0.8, 0.9, 3)))
    assert choose(scores, 1.0) == "fusion"


ROWS, COLS = np.ogrid[:40, :40]
RADIUS = np.hypot(ROWS - 20, COLS - 20)[None]


def _disc(radius: float) -> np.ndarray:
    return RADIUS <= radius


def _soft(radius: float) -> np.ndarray:
    """A soft disc: 0.5 on its edge at ``radius``, as a propagated probability."""
    return (1.0 / (1.0 + np.exp((RADIUS - radius) / 1.5))).astype(np.float32)


def test_blend_of_a_shrunk_chain_and_an_overgrown_refinement_beats_both():
    """A chain that lost area (radius 8 of 10) and a refinement that overshot (radius 12): their
    mean lands between, nearer the truth than either."""
    from SAMFewShotLib.engines.auto import candidate_probability
    from SAMFewShotLib.metrics import dice

    truth = _disc(10)
    inputs = {"register": _soft(8), "refined": _soft(12)}
    scores = {name: dice(candidate_probability(name, inputs) > 0.5, truth) for name in ("register", "refined", "blend")}
    assert scores["blend"] > max(scores["register"], scores["refined"]) + 0.05
    assert choose(scores, reliability=0.5) == "blend"  # no refinement margin: a blend keeps a right mask


def test_blend_keeps_a_correct_mask_whatever_the_refinement_says():
    from SAMFewShotLib.engines.auto import candidate_probability

    truth = _disc(10)
    rng = np.random.default_rng(0)
    refined = rng.uniform(0.0, 1.0, truth.shape).astype(np.float32)
    blended = candidate_probability("blend", {"register": truth.astype(np.float32), "refined": refined})
    assert np.array_equal(blended > 0.5, truth)
