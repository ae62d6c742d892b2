"""Algorithm 2: meta-training on small synthetic tasks gives an init that adapts better than
the plain init on a held-out task (lower support and held-out query loss after the same steps)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import numpy as np
import torch

from SAMFewShotLib.meta.config import MetaConfig
from SAMFewShotLib.meta.load import load_meta_model
from SAMFewShotLib.meta.losses import segmentation_loss
from SAMFewShotLib.meta.meta_learning import MetaTrainingSettings, meta_train, msl_weights
from SAMFewShotLib.meta.online import PatchCache, SupportSet, adapt, nearest
from SAMFewShotLib.meta.slices import prepare
from SAMFewShotLib.meta.tasks import tasks_from_volumes
from SAMFewShotLib.progress import Cancelled, CancelToken
from SAMFewShotLib.sam.preprocess import Preprocessing
from SAMFewShotLib.volume import LabelVolume
from Testing.meta import meta_cases

CONFIG = MetaConfig(steps=4, learning_rate=8e-3, checkpointing=False)
SETTINGS = MetaTrainingSettings(iterations=10, shots=2, queries=2, meta_lr=3e-3, msl_fraction=0.3)


def tasks(seeds):
    cases = []
    for seed in seeds:
        volume, truth = meta_cases.textured_case(seed, jitter=0.15)
        cases.append((f"case{seed}", volume, LabelVolume(volume.with_array(truth.astype(np.uint8)))))
    return tasks_from_volumes(cases)[0]


def held_out_losses(meta, state, rates) -> tuple[float, float]:
    """(support loss after adapting, mean loss on the other slices) on a task never trained on."""
    volume, truth = meta_cases.textured_case(99, jitter=0.15)
    net = meta.network
    net.load_trainable_state(state)
    prep = Preprocessing.for_volume(volume)
    supports = [prepare(net.sam, volume, 0, z, prep, truth[z]) for z in (5, 11)]
    cache = PatchCache(net)
    online = adapt(net, SupportSet(supports, [], volume, 0, prep, CONFIG.max_shift), rates,
                   rng=np.random.default_rng(0), cache=cache)
    with torch.no_grad():
        support_features = {s.index: net.features(cache.get(s)) for s in supports}
        losses = []
        for z in (2, 4, 7, 9, 13):
            query = prepare(net.sam, volume, 0, z, prep, truth[z])
            support = nearest(z, supports)
            logits = net.decode_example(net.features(cache.get(query)), query, support_features[support.index], support)
            losses.append(float(segmentation_loss(logits, query.mask)))
    return online.final_loss, float(np.mean(losses))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    checkpoint = meta_cases.small_sam_checkpoint(tmp_path_factory.mktemp("meta") / "small.pth")
    meta = load_meta_model(str(checkpoint), config=CONFIG)
    result = meta_train(meta.network, tasks(range(10, 14)), SETTINGS)
    return meta, result


def test_the_meta_learned_init_adapts_better_than_the_plain_init(trained):
    meta, result = trained
    plain_support, plain_query = held_out_losses(meta, meta.start, meta.learning_rates)
    meta_support, meta_query = held_out_losses(meta, result.state, result.learning_rates)
    assert meta_support < plain_support - 0.1, (plain_support, meta_support)
    assert meta_query < plain_query, (plain_query, meta_query)


def test_the_run_is_recorded(trained):
    meta, result = trained
    assert result.iterations == 10 and len(result.query_losses) == 10 and len(result.support_losses) == 10
    assert result.learning_rates.shape == (CONFIG.steps, len(meta.network.trainable()))
    assert torch.all(result.learning_rates > 0)
    assert set(result.state) == set(meta.network.trainable())
    assert sorted(result.tasks) == [f"case{s}:1" for s in range(10, 14)]


def test_cancel_is_honoured_between_inner_steps(trained):
    meta, _ = trained
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        meta_train(meta.network, tasks([10]), SETTINGS, cancel=cancel)


def test_multi_step_loss_weights_anneal_to_the_last_step():
    first = msl_weights(0, 100, 4, 0.3)
    middle = msl_weights(20, 100, 4, 0.3)
    late = msl_weights(30, 100, 4, 0.3)
    np.testing.assert_allclose(first, [0.25] * 4)
    assert middle[0] < 0.25 and middle[-1] > 0.25 and middle.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(late, [0, 0, 0, 1])
    np.testing.assert_allclose(msl_weights(0, 100, 4, 0.0), [0, 0, 0, 1])
