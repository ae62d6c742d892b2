"""Training checkpoints: resume continues the same run; cancel keeps a checkpoint and writes no bundle."""

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.atlas.rrl.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from SAMFewShotLib.atlas.rrl.training import TrainSettings, train_rrl_bundle
from SAMFewShotLib.progress import Cancelled, CancelToken
from Testing.atlas.rrl.rrl_synthetic import phantom, targets

SETTINGS = TrainSettings(checkpoint_every=1000, dice_warmup=3)  # a checkpoint is also written at the end


def _inputs():
    atlas_image, atlas_labels = phantom()
    return atlas_image, atlas_labels, [image for image, _ in targets(2)]


def _train(tmp_path, name, iterations, **kwargs):
    image, labels, unlabeled = _inputs()
    return train_rrl_bundle(
        image, labels, unlabeled, tmp_path / f"{name}.zip", size=32, iterations=iterations,
        work_dir=tmp_path / name, settings=SETTINGS, device="cpu", **kwargs,
    )


def test_resume_continues_the_same_run(tmp_path):
    _train(tmp_path, "straight", 4)
    _train(tmp_path, "split", 2)
    first = load_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)
    assert first["iteration"] == 2
    _train(tmp_path, "split", 4, resume=True)
    straight = load_checkpoint(tmp_path / "straight" / CHECKPOINT_NAME)
    resumed = load_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)
    assert resumed["iteration"] == straight["iteration"] == 4
    steps = {s["step"].item() for s in resumed["optimizer"]["state"].values()}
    assert steps == {4.0}  # Adam's step counters went on from 2, not from 0
    for name, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(resumed["generator"], straight["generator"])


def test_resume_of_another_run_or_without_checkpoint_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        _train(tmp_path, "none", 2, resume=True)
    _train(tmp_path, "run", 1)
    image, labels, unlabeled = _inputs()
    with pytest.raises(ValueError, match="another run"):
        train_rrl_bundle(image, labels, unlabeled[:1], tmp_path / "run.zip", size=32, iterations=2,
                         work_dir=tmp_path / "run", settings=SETTINGS, resume=True)


def test_cancel_writes_a_checkpoint_and_no_bundle(tmp_path):
    cancel = CancelToken()

    def progress(stage, done, total):
        if done == 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        _train(tmp_path, "cancelled", 5, progress=progress, cancel=cancel)
    assert load_checkpoint(tmp_path / "cancelled" / CHECKPOINT_NAME)["iteration"] == 2
    assert not (tmp_path / "cancelled.zip").exists()


def test_progress_every_iteration_and_a_checkpoint_every_n(tmp_path):
    calls, saved = [], []
    checkpoint = tmp_path / "progress" / CHECKPOINT_NAME

    def progress(stage, done, total):
        calls.append((stage, done, total))
        if stage == "RRL-MedSAM training" and done == 3:  # just before the 4th iteration's checkpoint
            saved.append(load_checkpoint(checkpoint)["iteration"])

    image, labels, unlabeled = _inputs()
    train_rrl_bundle(image, labels, unlabeled, tmp_path / "progress.zip", size=32, iterations=4,
                     work_dir=tmp_path / "progress", settings=TrainSettings(checkpoint_every=2), progress=progress)
    assert [c for c in calls if c[0] == "RRL-MedSAM training"] == [("RRL-MedSAM training", d, 4) for d in range(5)]
    assert saved == [2]
    assert load_checkpoint(checkpoint)["iteration"] == 4


def test_checkpoint_files_are_validated(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(path)
    save_checkpoint(path, {"something": 1})
    with pytest.raises(ValueError, match="not an RRL-MedSAM checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"iterations": 0}, "iterations"),
        ({"size": 48}, "multiple of 32"),
        ({"device": "tpu"}, "Device"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    image, labels, unlabeled = _inputs()
    arguments = {"size": 32, "iterations": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        train_rrl_bundle(image, labels, unlabeled, tmp_path / "x.zip", work_dir=tmp_path / "w", **arguments)


def test_empty_atlas_labels_and_no_unlabelled_images_are_refused(tmp_path):
    image, labels, unlabeled = _inputs()
    with pytest.raises(ValueError, match="holds no label"):
        train_rrl_bundle(
            image, labels.with_array(labels.array * 0), unlabeled, tmp_path / "x.zip", size=32, iterations=1
        )
    with pytest.raises(ValueError, match="at least one unlabelled"):
        train_rrl_bundle(image, labels, [], tmp_path / "x.zip", size=32, iterations=1)


def test_an_unusable_output_is_refused_before_training(tmp_path):
    image, labels, unlabeled = _inputs()
    folder = tmp_path / "occupied"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a bundle")
    calls = []
    with pytest.raises(ValueError, match="not empty"):
        train_rrl_bundle(image, labels, unlabeled, folder, size=32, iterations=1,
                         progress=lambda *args: calls.append(args))
    assert calls == [] and not (tmp_path / "occupied.work").exists()


def test_a_diverged_training_stops_keeps_the_last_checkpoint_and_writes_no_bundle(tmp_path, monkeypatch):
    from dataclasses import replace

    from SAMFewShotLib.atlas.rrl import training
    from SAMFewShotLib.errors import TrainingDiverged
    from Testing.training_faults import step_with_nan_loss_at

    # the 4th iteration's loss is NaN (this trainer counts an iteration after its step)
    monkeypatch.setattr(training.Trainer, "step", step_with_nan_loss_at(training.Trainer.step, 3))
    with pytest.raises(TrainingDiverged, match="RRL-MedSAM training diverged at iteration 4"):
        image, labels, unlabeled = _inputs()
        train_rrl_bundle(image, labels, unlabeled, tmp_path / "diverged.zip", size=32, iterations=6,
                         work_dir=tmp_path / "diverged", settings=replace(SETTINGS, checkpoint_every=2), device="cpu")
    assert load_checkpoint(tmp_path / "diverged" / CHECKPOINT_NAME)["iteration"] == 2  # weights before it
    assert not (tmp_path / "diverged.zip").exists()


def test_a_collapsed_registration_stops_the_training_and_writes_no_bundle(tmp_path, monkeypatch):
    """No loss is NaN, but the warped atlas matches the target worse than the unwarped one for a
    whole window: the run stops (it would otherwise write a bundle scoring far below the identity
    warp, as a 1,000-iteration 128^3 run on real CT did)."""
    from dataclasses import replace

    from SAMFewShotLib.atlas.rrl import training
    from SAMFewShotLib.errors import TrainingDiverged
    from Testing.training_faults import step_with_worse_ncc_from

    # from the 3rd iteration on, NCC 0.08 worse than no registration
    monkeypatch.setattr(training.Trainer, "step", step_with_worse_ncc_from(training.Trainer.step, 2, 0.08))
    monkeypatch.setattr(training, "COLLAPSE_WINDOW", 4)
    image, labels, unlabeled = _inputs()
    # the window's mean excess: ~0.04 after iteration 4 (2 of 4 collapsed: under the 0.05 margin),
    # ~0.06 after iteration 5 (3 of 4): the run stops there
    with pytest.raises(TrainingDiverged, match="collapsed at iteration 5: over the last 4 iterations"):
        train_rrl_bundle(image, labels, unlabeled, tmp_path / "collapsed.zip", size=32, iterations=9,
                         work_dir=tmp_path / "collapsed", settings=replace(SETTINGS, checkpoint_every=2),
                         device="cpu")
    assert not (tmp_path / "collapsed.zip").exists()
    assert load_checkpoint(tmp_path / "collapsed" / CHECKPOINT_NAME)["iteration"] == 4


def test_a_healthy_start_passes_the_collapse_guard(tmp_path, monkeypatch):
    """The first iterations of a normal run: the learnt displacement is still near zero, so the
    warped atlas's NCC loss equals the unwarped one's and the guard stays quiet."""
    from SAMFewShotLib.atlas.rrl import training

    trainer_losses = []
    original = training.Trainer.step

    def step(self):
        losses = original(self)
        trainer_losses.append(losses)
        return losses

    monkeypatch.setattr(training.Trainer, "step", step)
    monkeypatch.setattr(training, "COLLAPSE_WINDOW", 3)
    _train(tmp_path, "healthy", 4)
    assert all(abs(x["ncc"] - x["ncc_identity"]) < 0.05 for x in trainer_losses), trainer_losses


def test_training_flushes_denormals_and_switches_it_off_again(tmp_path, monkeypatch):
    """Late in a run denormal numbers made each step 1.25x slower (README); training flushes them."""
    from SAMFewShotLib.atlas.rrl import training

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # a denormal float32
    seen = []
    original = training.Trainer.step

    def step(self):
        seen.append(float(tiny * 1.0))
        return original(self)

    monkeypatch.setattr(training.Trainer, "step", step)
    _train(tmp_path, "flush", 2)
    assert seen == [0.0, 0.0]  # flushed inside
    assert float(tiny * 1.0) > 0.0  # and not any more afterwards
