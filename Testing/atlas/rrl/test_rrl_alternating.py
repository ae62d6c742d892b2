"""The joint stage alternates as the paper does: medical step -> mutual EMA -> general step -> mutual EMA."""

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.atlas.normalisation import default_normalisation
from SAMFewShotLib.atlas.rrl import training
from SAMFewShotLib.atlas.rrl.data import prepare_training_data
from SAMFewShotLib.atlas.rrl.model import RRLConfig
from SAMFewShotLib.atlas.rrl.training import Trainer, TrainSettings, dice_ramp
from Testing.atlas.rrl.rrl_synthetic import phantom, targets


def _trainer(**settings) -> Trainer:
    image, labels = phantom()
    data = prepare_training_data(image, labels, [targets(1)[0][0]], 32, default_normalisation("CT"))
    return Trainer(data, RRLConfig(size=32, n_classes=3), TrainSettings(**settings), torch.device("cpu"))


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, p) for a, p in zip(before, module.parameters()))


@pytest.mark.parametrize("alternate, ema_calls", [(True, 2), (False, 1)])
def test_one_iteration_applies_the_mutual_ema_after_each_branch_step(monkeypatch, alternate, ema_calls):
    trainer = _trainer(alternate=alternate, augment=False)
    calls = []
    real = training.mutual_ema_
    monkeypatch.setattr(training, "mutual_ema_", lambda *a: (calls.append(a), real(*a)))
    losses = trainer.step()
    assert len(calls) == ema_calls
    assert {"smooth", "ncc", "dice", "seg_medical", "seg_general", "total"} <= set(losses)


def test_the_medical_step_leaves_the_general_decoder_and_the_general_step_the_medical_decoders():
    trainer = _trainer(augment=False)
    model = trainer.model
    medical_ids = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    general_ids = {id(p) for group in trainer.general_optimizer.param_groups for p in group["params"]}
    assert not medical_ids & general_ids
    assert {id(p) for p in model.general_segmentation.parameters()} <= general_ids
    assert {id(p) for p in model.registration.parameters()} <= medical_ids
    registration, general = _snapshot(model.registration), _snapshot(model.general_segmentation)
    trainer.step()
    assert _changed(registration, model.registration) and _changed(general, model.general_segmentation)


def test_the_registration_dice_term_is_off_then_ramps_in():
    assert [dice_ramp(t, 100) for t in (0, 100, 150, 200, 1000)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert dice_ramp(0, 0) == 1.0
