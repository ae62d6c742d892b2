"""Algorithm 1 (online adaptation): S x K per-pair SGD updates at rate alpha, the training pairs,
the support loss falls, progress and cancel. Whether what it learns beats the honest baselines
is tested end to end in Testing/engines/test_meta_engine.py."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import numpy as np
import torch

from SAMFewShotLib.meta import online as online_module
from SAMFewShotLib.meta.config import MetaConfig
from SAMFewShotLib.meta.load import load_meta_model
from SAMFewShotLib.meta.online import SupportSet, adapt
from SAMFewShotLib.meta.slices import prepare
from SAMFewShotLib.progress import Cancelled, CancelToken
from SAMFewShotLib.sam.preprocess import Preprocessing
from Testing.meta import meta_cases

CONFIG = MetaConfig(steps=16, checkpointing=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(meta_cases.small_sam_checkpoint(tmp_path_factory.mktemp("online") / "small.pth"))


def support_set(meta, drawn, negatives=()):
    volume, truth = meta_cases.textured_case(1)
    prep = Preprocessing.for_volume(volume)
    supports = [prepare(meta.network.sam, volume, 0, z, prep, truth[z]) for z in drawn]
    empty = [prepare(meta.network.sam, volume, 0, z, prep, np.zeros_like(truth[z])) for z in negatives]
    return SupportSet(supports, empty, volume, 0, prep, CONFIG.max_shift)


def test_every_pair_gets_its_own_plain_sgd_update_at_rate_alpha(checkpoint, monkeypatch):
    """Algorithm 1: S sweeps x K pairs updates, each theta_t -= alpha[s, t] * dL_pair/dtheta_t."""
    meta = load_meta_model(checkpoint, config=MetaConfig(steps=2, checkpointing=False))
    rates = meta.learning_rates.clone()
    rates[1] *= 3.0
    updates = []
    real_apply = online_module.apply_step

    def recording(params, directions, step_rates):
        before = [p.detach().clone() for p in params]
        real_apply(params, directions, step_rates)
        moved = [(b - p.detach()) for b, p in zip(before, params)]
        for m, d, r in zip(moved, directions, step_rates.tolist()):
            torch.testing.assert_close(m, r * d, rtol=1e-4, atol=1e-6)
        updates.append(step_rates.clone())

    monkeypatch.setattr(online_module, "apply_step", recording)
    adapt(meta.network, support_set(meta, [4, 8, 12]), rates, rng=np.random.default_rng(0), evaluate_final=False)
    assert len(updates) == 2 * 3
    assert all(torch.equal(u, rates[0]) for u in updates[:3]) and all(torch.equal(u, rates[1]) for u in updates[3:])


@pytest.mark.parametrize("drawn", [[4, 8, 12], [8]])
def test_the_support_loss_falls_with_the_papers_sgd(checkpoint, drawn):
    meta = load_meta_model(checkpoint, config=MetaConfig(steps=8, checkpointing=False))
    result = adapt(meta.network, support_set(meta, drawn), meta.learning_rates, rng=np.random.default_rng(0))
    assert len(result.losses) == 8
    assert np.mean(result.losses[-2:]) < result.losses[0] - 0.2, result.losses


def test_pairs_use_the_nearest_other_support_and_the_declared_empty_slices(checkpoint):
    meta = load_meta_model(checkpoint, config=CONFIG)
    pairs = support_set(meta, [3, 6, 12], [15]).pairs(meta.network.sam, np.random.default_rng(0))
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
