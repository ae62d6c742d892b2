"""Semi-supervised methods, losses, checkpoints and resume of the 3D re-training."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")  # the sfr extra
import torch

from SAMFewShotLib.progress import Cancelled, CancelToken
from SAMFewShotLib.sfr.network import (
    NetworkConfig,
    build_network,
    load_network,
    save_network,
)
from SAMFewShotLib.sfr.retraining import (
    CHECKPOINT_NAME,
    RetrainSettings,
    dice_ce,
    prepare_volume,
    retrain,
)
from SAMFewShotLib.sfr.semi_supervised import MeanTeacher, make_method, sigmoid_rampup
from Testing.sfr.sfr_phantom import make_case

CONFIG = NetworkConfig(channels=(4, 8), strides=(2,))


def test_sigmoid_rampup_goes_from_exp_minus_5_to_1():
    assert sigmoid_rampup(0, 10) == pytest.approx(np.exp(-5))
    assert sigmoid_rampup(10, 10) == 1.0 and sigmoid_rampup(50, 10) == 1.0
    assert sigmoid_rampup(3, 0) == 1.0


def test_mean_teacher_moves_the_teacher_towards_the_student():
    torch.manual_seed(0)
    student = build_network(CONFIG)
    method = MeanTeacher(student, alpha=0.9)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = [t.clone() for t in method.teacher.parameters()]
    method.after_step(student, iteration=100)
    for old, new, s in zip(before, method.teacher.parameters(), student.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * s)
    with pytest.raises(ValueError, match="semi-supervised method"):
        make_method("magic", student)


def test_weighted_dice_ce_ignores_zero_weight_voxels():
    target = torch.zeros((1, 4, 4, 4), dtype=torch.int64)
    target[0, :2] = 1
    perfect = torch.where(target[:, None] == torch.arange(2).view(1, 2, 1, 1, 1), 20.0, -20.0)
    wrong = perfect.clone()
    wrong[:, :, 2:] = -wrong[:, :, 2:]  # wrong only where the weight is 0
    weight = torch.ones((1, 4, 4, 4))
    weight[0, 2:] = 0
    assert float(dice_ce(wrong, target, weight)) == pytest.approx(float(dice_ce(perfect, target, weight)), abs=1e-4)
    assert float(dice_ce(wrong, target, torch.ones_like(weight))) > 1.0


def _data():
    image, labels = make_case(0, shape=(16, 16, 16))
    prepare = dict(spacing=image.spacing, normalisation={"method": "none"}, label_values=[1])
    labelled = [prepare_volume(image, labels, None, **prepare)]
    other, other_labels = make_case(1, shape=(16, 16, 16))
    pseudo = [prepare_volume(other, other_labels, np.ones(other.shape, np.float32), **prepare)]
    return labelled, pseudo, [pseudo[0].image]


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    labelled, pseudo, unlabelled = _data()
    settings = RetrainSettings(iterations=4, patch=8, checkpoint_every=2)
    whole = retrain(labelled, pseudo, unlabelled, config=CONFIG, settings=settings, work_dir=tmp_path / "a")
    interrupted = RetrainSettings(iterations=2, patch=8, checkpoint_every=2)
    retrain(labelled, pseudo, unlabelled, config=CONFIG, settings=interrupted, work_dir=tmp_path / "b")
    resumed = retrain(labelled, pseudo, unlabelled, config=CONFIG, settings=settings, work_dir=tmp_path / "b",
                      resume=True)
    assert resumed.iterations == whole.iterations == 4
    for a, b in zip(whole.network.state_dict().values(), resumed.network.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="another run"):
        retrain(labelled, [], unlabelled, config=CONFIG, settings=settings, work_dir=tmp_path / "b", resume=True)
    with pytest.raises(ValueError, match="no checkpoint"):
        retrain(labelled, [], unlabelled, config=CONFIG, settings=settings, work_dir=tmp_path / "c", resume=True)


def test_cancel_writes_a_checkpoint(tmp_path):
    labelled, pseudo, unlabelled = _data()
    cancel = CancelToken()

    def progress(stage, done, total):
        if done == 1:
            cancel.cancel()

    with pytest.raises(Cancelled):
        retrain(labelled, pseudo, unlabelled, config=CONFIG, settings=RetrainSettings(iterations=5, patch=8),
                work_dir=tmp_path, progress=progress, cancel=cancel)
    assert (tmp_path / CHECKPOINT_NAME).is_file()


def test_network_file_round_trip_and_bad_settings(tmp_path):
    network = build_network(CONFIG)
    save_network(tmp_path / "n.pt", network, CONFIG, [3])
    _, config, values = load_network(tmp_path / "n.pt")
    assert config == CONFIG and values == [3]
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(ValueError, match="SFR network file"):
        load_network(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="iterations"):
        RetrainSettings(iterations=0)
    with pytest.raises(ValueError, match="architecture"):
        NetworkConfig(architecture="resnet")


def test_balanced_sampling_centres_patches_on_a_small_structure_as_often_as_on_others():
    """MONAI class-balanced crops (classes 0, 1, 2 equally): a 2x2x2 structure (class 2) in a 32^3
    volume is in about a third of the 8^3 patches; half-foreground sampling finds it far less."""
    from SAMFewShotLib.sfr.augmentation import random_crop

    target = torch.zeros((32, 32, 32), dtype=torch.int64)
    target[2:30, 2:30, 2:16] = 1
    target[24:26, 24:26, 26:28] = 2
    image, weight = target[None].float(), torch.ones(target.shape)
    rng = np.random.RandomState(0)
    balanced = [bool((random_crop(image, target, weight, (8, 8, 8), rng, classes=3)[1] == 2).any()) for _ in range(90)]
    rng = np.random.RandomState(0)
    plain = [bool((random_crop(image, target, weight, (8, 8, 8), rng)[1] == 2).any()) for _ in range(90)]
    assert 20 <= sum(balanced) <= 40 and sum(plain) < 10, (sum(balanced), sum(plain))
    # zero-weight voxels are never chosen as centres
    ignored = weight.clone()
    ignored[target == 2] = 0.0
    rng = np.random.RandomState(1)
    assert not any(bool((random_crop(image, target, ignored, (4, 4, 4), rng, classes=3)[1] == 2).any())
                   for _ in range(30))


class _Oracle(torch.nn.Module):
    """Logits of class 1 = 20 (image - 0.5): segments an image whose intensities are its truth."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), self.scale * (x - 0.5)], dim=1)


def test_agreement_selection_keeps_the_pseudo_label_the_teacher_agrees_with():
    from SAMFewShotLib.sfr.retraining import Trainer, TrainingVolume

    truth = torch.zeros((16, 16, 16), dtype=torch.int64)
    truth[4:12, 4:12, 4:12] = 1
    image = truth[None].float()
    shifted = torch.roll(truth, 3, dims=2)
    good = TrainingVolume(image, truth, torch.ones(truth.shape))
    bad = TrainingVolume(image, shifted, torch.ones(truth.shape))
    settings = RetrainSettings(iterations=4, patch=8, method="supervised", agreement_select=0.5)
    trainer = Trainer([good], [bad, good], [image], CONFIG, settings, torch.device("cpu"))
    trainer.student = _Oracle()
    trainer.method = make_method("supervised", trainer.student)
    agreement = trainer.select_by_agreement()
    assert agreement["indices"] == [1]
    assert agreement["scores"][1] == 1.0 and agreement["scores"][0] < 0.7
    trainer._apply_agreement(trainer.select_by_agreement())
    assert len(trainer.active_pseudo) == 1 and bool((trainer.active_pseudo[0].weight == 1).all())
    # on the bad pseudo-label, the disagreeing voxels (the shifted band) would be ignored
    trainer._apply_agreement({"indices": [0], "scores": agreement["scores"],
                              "masks": [(truth == shifted).float()]})
    assert float(trainer.active_pseudo[0].weight.sum()) == float((truth == shifted).sum())


def test_agreement_selection_and_poly_schedule_resume_exactly(tmp_path):
    labelled, pseudo, unlabelled = _data()
    pseudo = pseudo + [labelled[0]]
    options = dict(patch=8, checkpoint_every=2, agreement_select=0.5, agreement_at=0.25, lr_schedule="poly",
                   elastic=True)
    whole = retrain(labelled, pseudo, unlabelled, config=CONFIG, settings=RetrainSettings(iterations=4, **options),
                    work_dir=tmp_path / "a")
    assert whole.agreement is not None and len(whole.agreement["indices"]) == 1
    assert len(whole.agreement["scores"]) == 2
    cancel = CancelToken()

    def progress(stage, done, total):
        if done == 2:
            cancel.cancel()

    with pytest.raises(Cancelled):  # stopped after the selection (iteration 1), resumed from iteration 2
        retrain(labelled, pseudo, unlabelled, config=CONFIG, settings=RetrainSettings(iterations=4, **options),
                work_dir=tmp_path / "b", progress=progress, cancel=cancel)
    with pytest.raises(ValueError, match="another run"):
        retrain(labelled, pseudo, unlabelled, config=CONFIG, work_dir=tmp_path / "b", resume=True,
                settings=RetrainSettings(iterations=4, **{**options, "lr_schedule": "constant"}))
    resumed = retrain(labelled, pseudo, unlabelled, config=CONFIG, settings=RetrainSettings(iterations=4, **options),
                      work_dir=tmp_path / "b", resume=True)
    assert resumed.agreement == whole.agreement
    for a, b in zip(whole.network.state_dict().values(), resumed.network.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_poly_schedule_decays_the_learning_rate():
    from SAMFewShotLib.sfr.retraining import Trainer

    labelled, pseudo, unlabelled = _data()
    settings = RetrainSettings(iterations=4, patch=8, lr_schedule="poly", learning_rate=0.01)
    trainer = Trainer(labelled, pseudo, unlabelled, CONFIG, settings, torch.device("cpu"))
    rates = []
    for _ in range(4):
        trainer.step()
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.01 * (1 - t / 4) ** 0.9 for t in range(4)])
    with pytest.raises(ValueError, match="schedule"):
        RetrainSettings(lr_schedule="cosine")
    with pytest.raises(ValueError, match="kept fraction"):
        RetrainSettings(agreement_select=0.0)


def test_elastic_augmentation_keeps_classes_and_weights():
    from SAMFewShotLib.sfr.augmentation import augment

    target = torch.zeros((16, 16, 16), dtype=torch.int64)
    target[4:12, 4:12, 4:12] = 2
    target[6:8, 6:8, 6:8] = 1
    image, weight = target[None].float(), torch.ones(target.shape)
    changed = 0
    for seed in range(4):
        new_image, new_target, new_weight = augment(image, target, weight, np.random.RandomState(seed), elastic=True)
        assert new_image.shape == image.shape and new_target.shape == target.shape == new_weight.shape
        assert set(new_target.unique().tolist()) <= {0, 1, 2} and set(new_weight.unique().tolist()) <= {0.0, 1.0}
        changed += int(not torch.equal(new_target, target))
    assert changed >= 2


def test_a_diverged_re_training_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    from SAMFewShotLib.errors import TrainingDiverged
    from SAMFewShotLib.sfr import retraining
    from SAMFewShotLib.torch_files import read_torch_file
    from Testing.training_faults import step_with_nan_loss_at

    labelled, pseudo, unlabelled = _data()
    # the 3rd iteration's loss is NaN (this trainer counts an iteration inside its step)
    monkeypatch.setattr(retraining.Trainer, "step", step_with_nan_loss_at(retraining.Trainer.step, 3))
    with pytest.raises(TrainingDiverged, match="SFR re-training diverged at iteration 3"):
        retrain(labelled, pseudo, unlabelled, config=CONFIG,
                settings=RetrainSettings(iterations=5, patch=8, checkpoint_every=2), work_dir=tmp_path)
    saved = read_torch_file(tmp_path / CHECKPOINT_NAME, "SFR checkpoint")
    assert saved["iteration"] == 2  # the weights from before the divergence
