"""The training loop on synthetic embeddings (no encoder): schedule, early stopping, settings."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.fewshot.decoder import FewShotMaskDecoder
from SAMFewShotLib.fewshot.training import Example, TrainingConfig, default_iterations, evaluate, train_decoder
from SAMFewShotLib.progress import Cancelled, CancelToken
from Testing import tiny_sam
from Testing.fewshot.fewshot_cases import TINY_GLOBAL_ATTENTION


def examples(flip_validation: bool) -> tuple[list[Example], list[Example]]:
    """Two training slices whose target is the left half; a validation slice with the same
    kind of embedding whose target is the left half, or the right half when flipped."""
    generator = torch.Generator().manual_seed(0)
    left = torch.zeros((256, 256))
    left[:, :128] = 1.0
    valid = torch.ones((256, 256), dtype=torch.bool)

    def example(z: int, target: torch.Tensor) -> Example:
        embedding = torch.randn((32, 64, 64), generator=generator)
        embedding[0, :, :32] += 3.0  # the left half is marked in channel 0
        return Example(0, z, embedding, target, valid, torch.randn((2, 32), generator=generator))

    validation_target = 1.0 - left if flip_validation else left
    return [example(0, left), example(1, left)], [example(2, validation_target)]


@pytest.fixture
def decoder() -> FewShotMaskDecoder:
    return FewShotMaskDecoder.from_sam(tiny_sam.build_tiny_sam(global_attn_indexes=TINY_GLOBAL_ATTENTION), 1)


@pytest.mark.parametrize("shots, iterations", [(1, 50), (5, 50), (10, 60), (20, 80), (35, 90), (50, 100), (80, 100)])
def test_the_schedule_follows_the_paper(shots, iterations):
    assert default_iterations(shots) == iterations


def test_early_stopping_keeps_the_best_state_when_validation_gets_worse(decoder):
    train, validation = examples(flip_validation=True)
    config = TrainingConfig(iterations=40, learning_rate=3e-3, eval_every=2, patience=3, noise=0.0, shift_probability=0.0)
    result = train_decoder(decoder, train, validation, config)
    best = min(result.validation, key=lambda score: score[1])
    assert result.losses[-1] < result.losses[0]  # it did learn the training slices ...
    assert result.validation[-1][1] > best[1]  # ... which hurt the held-out one
    assert result.stopped_early and result.iterations == best[0] + config.patience * config.eval_every < 40
    assert result.best_iteration == best[0]
    assert evaluate(decoder, validation)[0] == pytest.approx(best[1], abs=1e-4)  # the best state is kept


def test_without_a_held_out_slice_every_planned_iteration_runs(decoder):
    train, _ = examples(flip_validation=False)
    result = train_decoder(decoder, train, [], TrainingConfig(iterations=4, learning_rate=3e-3))
    assert result.iterations == result.best_iteration == 4 and not result.stopped_early
    assert result.validation == []


def test_bf16_autocast_training_learns_too(decoder):
    train, _ = examples(flip_validation=False)
    result = train_decoder(decoder, train, [], TrainingConfig(iterations=6, learning_rate=3e-3, precision="bf16"))
    assert result.losses[-1] < result.losses[0]
    assert all(p.dtype == torch.float32 for p in decoder.parameters())


def test_progress_reports_every_step_and_cancel_stops_between_steps(decoder):
    train, validation = examples(flip_validation=False)
    token, seen = CancelToken(), []

    def progress(stage, done, total):
        seen.append((stage, done, total))
        if done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        train_decoder(decoder, train, validation, TrainingConfig(iterations=10), progress=progress, cancel=token)
    assert seen == [("fewshot: train", 0, 10), ("fewshot: train", 1, 10), ("fewshot: train", 2, 10)]


@pytest.mark.parametrize(
    "settings, message",
    [({"learning_rate": 0.0}, "0.0"), ({"iterations": -1}, "-1"), ({"patience": 0}, "patience"),
     ({"shift_probability": 1.5}, "1.5"), ({"noise": -0.1}, "-0.1"), ({"precision": "fp8"}, "fp8")],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**settings)


def test_training_needs_an_example(decoder):
    with pytest.raises(ValueError, match="at least one example"):
        train_decoder(decoder, [])
