"""Algorithm 1 really learns: on a striped ellipsoid among distractors of the same intensity,
online adaptation from the plain init beats the un-adapted model by >= 0.2 Dice on the
unannotated slices and beats the best intensity threshold; the support loss falls."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import numpy as np

from SAMFewShotLib.meta.config import MetaConfig
from SAMFewShotLib.meta.load import load_meta_model
from SAMFewShotLib.meta.online import PatchCache, SupportSet, adapt
from SAMFewShotLib.meta.predict import predict_structure
from SAMFewShotLib.meta.slices import prepare
from SAMFewShotLib.progress import Cancelled, CancelToken
from SAMFewShotLib.sam.preprocess import Preprocessing
from Testing.meta import meta_cases

CONFIG = MetaConfig(steps=16, learning_rate=6e-3, checkpointing=False)


def run(checkpoint, drawn: list[int], adapt_steps: bool):
    """(Dice on the other slices, online result or None, threshold Dice)."""
    volume, truth = meta_cases.textured_case(1)
    meta = load_meta_model(checkpoint, config=CONFIG)
    net = meta.network
    prep = Preprocessing.for_volume(volume)
    supports = [prepare(net.sam, volume, 0, z, prep, truth[z]) for z in drawn]
    cache = PatchCache(net)
    online = None
    if adapt_steps:
        support_set = SupportSet(supports, [], volume, 0, prep, CONFIG.max_shift)
        online = adapt(net, support_set, meta.learning_rates, rng=np.random.default_rng(0), cache=cache)
    result = predict_structure(net, volume, 0, prep, supports, set(), cache=cache)
    predicted = np.zeros(truth.shape, bool)
    predicted[result.first : result.first + len(result.probability)] = result.probability > 0.5
    others = [z for z in range(truth.shape[0]) if z not in drawn]
    return (
        meta_cases.dice(predicted[others], truth[others]),
        online,
        meta_cases.best_threshold_dice(volume.array, truth, drawn, others),
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(meta_cases.small_sam_checkpoint(tmp_path_factory.mktemp("online") / "small.pth"))


@pytest.fixture(scope="module")
def three_slices(checkpoint):
    drawn = [4, 8, 12]
    plain_dice, _, threshold = run(checkpoint, drawn, adapt_steps=False)
    adapted_dice, online, _ = run(checkpoint, drawn, adapt_steps=True)
    return plain_dice, adapted_dice, threshold, online


def test_the_support_loss_falls(three_slices):
    *_, online = three_slices
    assert len(online.losses) == CONFIG.steps
    assert online.final_loss < 0.5 * online.losses[0]


def test_adaptation_beats_the_unadapted_model_by_at_least_02_dice(three_slices):
    plain_dice, adapted_dice, *_ = three_slices
    assert adapted_dice >= plain_dice + 0.2, (plain_dice, adapted_dice)


def test_adaptation_beats_the_best_intensity_threshold(three_slices):
    _, adapted_dice, threshold, _ = three_slices
    assert adapted_dice > threshold + 0.1, (threshold, adapted_dice)


def test_a_single_support_slice_learns_from_shifted_copies(checkpoint):
    plain_dice, _, _ = run(checkpoint, [8], adapt_steps=False)
    adapted_dice, online, _ = run(checkpoint, [8], adapt_steps=True)
    assert online.losses[-1] < online.losses[0] - 0.3
    assert adapted_dice >= plain_dice + 0.2, (plain_dice, adapted_dice)


def test_pairs_use_the_nearest_other_support_and_the_declared_empty_slices(checkpoint):
    volume, truth = meta_cases.textured_case(1)
    meta = load_meta_model(checkpoint, config=CONFIG)
    prep = Preprocessing.for_volume(volume)
    supports = [prepare(meta.network.sam, volume, 0, z, prep, truth[z]) for z in (3, 6, 12)]
    negative = prepare(meta.network.sam, volume, 0, 15, prep, np.zeros_like(truth[15]))
    pairs = SupportSet(supports, [negative], volume, 0, prep, 0.1).pairs(meta.network.sam, np.random.default_rng(0))
    assert [(q.index, s.index) for q, s in pairs] == [(3, 6), (6, 3), (12, 6), (15, 12)]


def test_progress_per_step_and_cancel_between_steps(checkpoint):
    volume, truth = meta_cases.textured_case(1)
    meta = load_meta_model(checkpoint, config=CONFIG)
    prep = Preprocessing.for_volume(volume)
    supports = [prepare(meta.network.sam, volume, 0, z, prep, truth[z]) for z in (4, 8)]
    cancel, calls = CancelToken(), []

    def progress(stage, done, total):
        calls.append((stage, done, total))
        if done == 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        adapt(meta.network, SupportSet(supports, [], volume, 0, prep, 0.1), meta.learning_rates,
              rng=np.random.default_rng(0), stage="adapt", progress=progress, cancel=cancel)
    assert calls == [("adapt", 0, 16), ("adapt", 1, 16), ("adapt", 2, 16)]


def test_learning_rates_of_the_wrong_shape_are_refused(checkpoint):
    volume, truth = meta_cases.textured_case(1)
    meta = load_meta_model(checkpoint, config=CONFIG)
    prep = Preprocessing.for_volume(volume)
    supports = [prepare(meta.network.sam, volume, 0, 4, prep, truth[4])]
    with pytest.raises(ValueError, match="learning_rates must have shape"):
        adapt(meta.network, SupportSet(supports, [], volume, 0, prep, 0.1), meta.learning_rates[:, :3],
              rng=np.random.default_rng(0))
