"""Algorithm 2: T tasks per meta-step, first-order query gradients averaged into an AdamW step with
a cosine schedule; leave-one-organ-out task selection. (That a meta-learned init adapts better
than the plain init is not shown here: on these phantoms it needs minutes of meta-training.)"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import numpy as np
import torch

from SAMFewShotLib.errors import InputError
from SAMFewShotLib.meta import meta_learning
from SAMFewShotLib.meta.config import MetaConfig
from SAMFewShotLib.meta.load import load_meta_model
from SAMFewShotLib.meta.meta_learning import MetaTrainingSettings, meta_train, pick_tasks
from SAMFewShotLib.meta.tasks import tasks_from_volumes
from SAMFewShotLib.progress import Cancelled, CancelToken
from SAMFewShotLib.volume import LabelVolume
from Testing.meta import meta_cases

CONFIG = MetaConfig(steps=1, checkpointing=False)  # one inner sweep: the mechanics, cheaply
SETTINGS = MetaTrainingSettings(iterations=2, tasks_per_step=2, shots=2, queries=1, meta_lr=3e-3)


def tasks(seeds):
    cases = []
    for seed in seeds:
        volume, truth = meta_cases.textured_case(seed, jitter=0.15)
        cases.append((f"case{seed}", volume, LabelVolume(volume.with_array(truth.astype(np.uint8)))))
    return tasks_from_volumes(cases)[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    checkpoint = meta_cases.small_sam_checkpoint(tmp_path_factory.mktemp("meta") / "small.pth")
    meta = load_meta_model(str(checkpoint), config=CONFIG)
    result = meta_train(meta.network, tasks(range(10, 14)), SETTINGS)
    return meta, result


def test_the_run_is_recorded(trained):
    meta, result = trained
    assert result.iterations == 2 and len(result.query_losses) == 2 and len(result.support_losses) == 2
    assert any(not torch.equal(result.state[k], meta.start[k]) for k in result.state)
    assert torch.equal(result.learning_rates, torch.full((CONFIG.steps, len(meta.network.trainable())), 0.05))
    assert set(result.state) == set(meta.network.trainable())
    assert sorted(result.tasks) == [f"case{s}:1" for s in range(10, 14)]


def test_every_meta_step_adapts_t_distinct_tasks_and_takes_one_cosine_annealed_adamw_step(trained, monkeypatch):
    meta, _ = trained
    adapted, steps = [], []
    real_adapt = meta_learning.adapt

    def counting(network, support_set, *args, **kwargs):
        adapted.append(id(support_set.volume))
        return real_adapt(network, support_set, *args, **kwargs)

    real_step = torch.optim.AdamW.step

    def stepping(self, *args, **kwargs):
        steps.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(meta_learning, "adapt", counting)
    monkeypatch.setattr(torch.optim.AdamW, "step", stepping)
    settings = MetaTrainingSettings(iterations=3, tasks_per_step=2, shots=2, queries=1, meta_lr=2e-4)
    meta_train(meta.network, tasks(range(10, 13)), settings)
    assert len(adapted) == 6 and all(len(set(adapted[i : i + 2])) == 2 for i in (0, 2, 4))
    assert steps[0] == pytest.approx(2e-4) and steps[0] > steps[1] > steps[2]


def test_pick_tasks_repeats_only_when_there_are_fewer_tasks_than_t():
    rng = np.random.default_rng(0)
    assert sorted(pick_tasks(list("abcd"), 4, rng)) == list("abcd")
    assert len(pick_tasks(list("ab"), 5, rng)) == 5


def test_leave_one_organ_out_drops_the_held_out_label_everywhere():
    volume, truth = meta_cases.textured_case(10)
    labels = truth.astype(np.uint8)
    labels[:, :, 15:][truth[:, :, 15:]] = 2
    cases = [("a", volume, LabelVolume(volume.with_array(labels)))]
    assert sorted(t.name for t in tasks_from_volumes(cases)[0]) == ["a:1", "a:2"]
    assert [t.name for t in tasks_from_volumes(cases, held_out=2)[0]] == ["a:1"]
    with pytest.raises(InputError, match="Label 7"):
        tasks_from_volumes(cases, held_out=7)


def test_cancel_is_honoured_between_inner_steps(trained):
    meta, _ = trained
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        meta_train(meta.network, tasks([10]), SETTINGS, cancel=cancel)
