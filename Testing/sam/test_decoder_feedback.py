"""Batched SAM-MPA decoding: feedback rounds inside one decode equal successive decode calls, and
refining slices together equals refining them one at a time (tiny random SAM)."""

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.sam.decoder import Prompt, decode, decode_slices
from SAMFewShotLib.sam.embedding_cache import SliceEmbedding
from SAMFewShotLib.sam.refinement import refine_label
from Testing.tiny_sam import build_tiny_sam

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def sam():
    torch.set_num_threads(1)
    return build_tiny_sam(seed=5)


def embedding(seed, shape=(60, 80)):
    generator = torch.Generator().manual_seed(seed)
    rows, cols = shape
    scale = 1024 / max(rows, cols)
    input_size = (int(rows * scale + 0.5), int(cols * scale + 0.5))
    return SliceEmbedding(torch.randn(32, 64, 64, generator=generator), shape, input_size, shape)


def prompt(seed):
    rng = np.random.default_rng(seed)
    return Prompt(
        points=np.array([[40.0, 30.0], [5.0, 5.0]]),
        labels=np.array([1, 0]),
        box=np.array([10.0, 8.0, 70.0, 50.0]),
        mask_input=rng.normal(size=(1, 256, 256)).astype(np.float32),
    )


def test_feedback_rounds_equal_successive_decodes(sam):
    first = embedding(0)
    prompts = [prompt(1), prompt(2)]
    stepwise = decode(sam, first, prompts, multimask_output=False)
    for _ in range(2):
        prompts = [
            Prompt(points=p.points, labels=p.labels, box=p.box, mask_input=stepwise.low_res_logits[i, 0][None])
            for i, p in enumerate(prompts)
        ]
        stepwise = decode(sam, first, prompts, multimask_output=False)
    together = decode(sam, first, [prompt(1), prompt(2)], multimask_output=False, feedback_rounds=2)
    assert np.abs(together.logits - stepwise.logits).max() < TOLERANCE
    assert np.abs(together.low_res_logits - stepwise.low_res_logits).max() < TOLERANCE
    assert np.abs(together.iou_predictions - stepwise.iou_predictions).max() < TOLERANCE


def test_feedback_needs_one_mask_per_prompt_set(sam):
    with pytest.raises(ValueError, match="multimask_output=False"):
        decode_slices(sam, [(embedding(0), prompt(1))], feedback_rounds=1)


def test_slices_refined_together_equal_one_at_a_time(sam):
    coarse = np.zeros((4, 60, 80), bool)
    coarse[0, 10:40, 20:60] = True
    coarse[1, 15:45, 25:50] = True
    coarse[1, 50:58, 65:75] = True  # a second component
    coarse[3, 20:30, 30:40] = True  # slice 2 stays empty: nothing to prompt
    encoded = {z: embedding(10 + z) for z in range(4)}
    calls_alone, calls_together = [0], [0]
    alone, alone_quality = refine_label(
        sam, encoded, coarse, range(4), refine=1, decoder_calls=calls_alone, slices_per_call=1
    )
    together, together_quality = refine_label(
        sam, encoded, coarse, range(4), refine=1, decoder_calls=calls_together, slices_per_call=4
    )
    assert np.abs(alone - together).max() < TOLERANCE
    assert sorted(together_quality) == [0, 1, 3]
    assert calls_alone[0] == 2 * 3 and calls_together[0] == 2  # 3 slices to prompt, 2 rounds each
