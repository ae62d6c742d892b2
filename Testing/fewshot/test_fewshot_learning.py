"""Training the few-shot head on a tiny SAM measurably learns the structure.

The phantom (fewshot_cases.py) has a target and distractors of the same brightness; the head is
trained on 5 drawn slices and scored on the 7 others against the untrained head (the same
decoder before any step: SAM prompted with the target embeddings) and against the best
intensity threshold a user could read off the drawn slices.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from SAMFewShotLib.fewshot import run_head, train_head
from SAMFewShotLib.fewshot.training import TrainingConfig
from Testing.fewshot.fewshot_cases import DRAWN, dice, unannotated


@pytest.fixture(scope="module")
def untrained(case):
    return train_head(case.image, case.annotation, checkpoint=str(case.checkpoint), device="cpu", cache=case.cache,
                      config=TrainingConfig(iterations=0))


def scores(case, head) -> float:
    """Dice of the head's label 1 on the unannotated slices."""
    slices = unannotated(case)
    labels = run_head(head, case.image, checkpoint=str(case.checkpoint), device="cpu", cache=case.cache).labels
    return dice(labels.array[slices] == 1, case.truth[slices])


def threshold_dice(case) -> float:
    """Dice of the midpoint threshold between the drawn slices' inside and outside mean intensity."""
    drawn = list(DRAWN)
    values, truth = case.image.array[drawn], case.truth[drawn]
    threshold = (values[truth].mean() + values[~truth].mean()) / 2
    slices = unannotated(case)
    return dice(case.image.array[slices] > threshold, case.truth[slices])


def test_training_lowers_the_loss(trained):
    losses = trained.training.losses
    assert len(losses) == trained.training.iterations > 0
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])


def test_trained_head_beats_the_untrained_head_and_a_threshold(case, trained, untrained):
    learned, before, threshold = scores(case, trained.head), scores(case, untrained.head), threshold_dice(case)
    assert learned >= before + 0.2, (learned, before)
    assert learned > threshold + 0.05, (learned, threshold)


def test_the_held_out_slice_improves_and_the_best_state_is_kept(trained):
    result = trained.training
    assert trained.held_out == {1: DRAWN[len(DRAWN) // 2]}
    first, best = result.validation[0], max(result.validation, key=lambda v: -v[1])
    assert best[0] == result.best_iteration > 0
    assert best[2] > first[2] + 0.2  # Dice of the held-out slice


def test_the_head_keeps_a_target_embedding_per_drawn_slice(case, trained):
    head = trained.head
    assert head.label_values == [1] and head.segments[0].name == "target"
    tokens = head.targets[1]
    assert tuple(tokens.shape) == (len(DRAWN), 32) and bool(tokens.isfinite().all())
    assert head.base_model.sha256 and head.axis == 0
