"""Parity of the cached, batched SAM path with the official SamPredictor (issue item 6).

Same random weights (tiny SAM), same slices: ``encode_slices`` + ``decode_slices`` must give the
masks, logits, IoU predictions and low-res logits of ``SamPredictor.set_image`` + ``predict``
(max abs logit difference < 1e-4 in fp32) for point, box, mask, combined and empty prompts. With
anisotropic pixels, SamPredictor runs on the square-pixel slice and its logits are mapped back
to the slice grid with the geometry's inverse.
"""

import numpy as np
import pytest

pytest.importorskip("torch")

import torch
from segment_anything import SamPredictor
from segment_anything.modeling import MaskDecoder

from SAMFewShotLib.sam.decoder import Prompt, decode, decode_slices
from SAMFewShotLib.sam.encoder import encode_slices
from SAMFewShotLib.sam.preprocess import Preprocessing, slice_rgb
from SAMFewShotLib.volume import Volume
from Testing.phantoms import ellipsoid, render
from Testing.tiny_sam import build_tiny_sam

SHAPE = (5, 101, 122)  # (z, y, x): non-square slices of 101 rows x 122 cols
SLICES = [1, 3]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def sam():
    return build_tiny_sam(seed=3)


def make_volume(spacing):
    truth = ellipsoid((2, 50, 60), (3, 30, 42), SHAPE)
    return Volume(render(truth, seed=1), spacing=spacing)


@pytest.fixture(scope="module")
def isotropic():
    volume = make_volume((0.9, 0.9, 2.0))
    return volume, Preprocessing.from_percentiles(volume)


@pytest.fixture(scope="module")
def isotropic_encoded(sam, isotropic):
    volume, prep = isotropic
    return encode_slices(sam, "tiny", volume, 0, SLICES, prep, batch_size=len(SLICES))


@pytest.fixture(scope="module")
def anisotropic():
    volume = make_volume((0.7, 1.6, 3.0))  # rows 1.6 mm, cols 0.7 mm
    return volume, Preprocessing.from_percentiles(volume)


def first_prompts(geometry_slice_shape):
    rows, cols = geometry_slice_shape
    point = dict(points=np.array([[cols * 0.5, rows * 0.5]]), labels=np.array([1]))
    box = dict(box=np.array([cols * 0.15, rows * 0.2, cols * 0.85, rows * 0.8]))
    return point, box


def reference(predictor, geometry, prompts, multimask_output=True):
    """SamPredictor outputs, logits mapped to the slice grid; one dict per prompt set.

    ``predictor`` holds the slice SAM sees (set_image done); ``prompts`` are on the slice grid,
    the predictor gets them on the model grid.
    """
    outputs = []
    for prompt in prompts:
        logits, iou, low_res = predictor.predict(
            point_coords=None if prompt.points is None else geometry.points_to_model(prompt.points),
            point_labels=prompt.labels,
            box=None if prompt.box is None else geometry.boxes_to_model(prompt.box),
            mask_input=prompt.mask_input,
            multimask_output=multimask_output,
            return_logits=True,
        )
        slice_logits = geometry.logits_to_slice(torch.as_tensor(logits)[None])[0].numpy()
        outputs.append(dict(logits=slice_logits, model_logits=logits, iou=iou, low_res=low_res))
    return outputs


def prompt_sets(slice_shape, low_res):
    """Point, box, mask (from an earlier low-res logit), point + box + mask, and empty prompt sets."""
    point, box = first_prompts(slice_shape)
    rows, cols = slice_shape
    mask_input = low_res[np.argmax([low.std() for low in low_res])][None]
    combined = dict(
        points=np.array([[cols * 0.5, rows * 0.5], [cols * 0.05, rows * 0.05]]),
        labels=np.array([1, 0]),
        box=box["box"],
        mask_input=mask_input,
    )
    return [Prompt(**point), Prompt(**box), Prompt(mask_input=mask_input), Prompt(**combined), Prompt()]


def assert_matches(ours, expected):
    """Our DecodedMasks against SamPredictor outputs, prompt set by prompt set."""
    for b, ref in enumerate(expected):
        assert np.abs(ours.logits[b] - ref["logits"]).max() < TOLERANCE
        assert np.abs(ours.low_res_logits[b] - ref["low_res"]).max() < TOLERANCE
        assert np.abs(ours.iou_predictions[b] - ref["iou"]).max() < TOLERANCE
        # Masks are the logits' sign: equal wherever the reference logit is not within the
        # tolerance of 0 (a logit of 1e-6 may round to either side with another summation order).
        decided = np.abs(ref["logits"]) >= TOLERANCE
        np.testing.assert_array_equal(ours.masks[b][decided], (ref["logits"] > 0)[decided])


def run_parity(sam, volume, prep, axis, slices, multimask_output=True, encoded=None):
    if encoded is None:
        encoded = encode_slices(sam, "tiny", volume, axis, slices, prep, batch_size=len(slices))
    requests, expected = [], []
    for index in slices:
        embedding = encoded[index]
        rgb, geometry = slice_rgb(volume, axis, index, prep)
        predictor = SamPredictor(sam)
        predictor.set_image(rgb)
        torch.testing.assert_close(embedding.embedding, predictor.features[0], rtol=0, atol=TOLERANCE)
        point, _ = first_prompts(embedding.slice_shape)
        (first,) = reference(predictor, geometry, [Prompt(**point)])
        prompts = prompt_sets(embedding.slice_shape, first["low_res"])
        outputs = reference(predictor, geometry, prompts, multimask_output)
        requests.append((embedding, prompts))
        expected.append(outputs)
    # every slice and every prompt set in one call (several decoder batches, one per prompt kind)
    results = decode_slices(sam, requests, multimask_output=multimask_output)
    for ours, outputs in zip(results, expected):
        assert ours.masks.shape == (5, 3 if multimask_output else 1, *requests[0][0].slice_shape)
        assert ours.masks.dtype == bool
        assert_matches(ours, outputs)
    return requests, expected, results


def test_parity_with_sam_predictor_on_non_square_slices(sam, isotropic, isotropic_encoded):
    volume, prep = isotropic
    requests, _, results = run_parity(sam, volume, prep, 0, SLICES, encoded=isotropic_encoded)
    assert requests[0][0].geometry.is_identity and results[0].masks.shape[-2:] == (101, 122)
    assert any(r.masks.any() and not r.masks.all() for r in results)  # not a degenerate mask


def test_parity_single_mask_output(sam, isotropic, isotropic_encoded):
    volume, prep = isotropic
    run_parity(sam, volume, prep, 0, SLICES[:1], multimask_output=False, encoded=isotropic_encoded)


def test_parity_through_square_pixel_resampling(sam, anisotropic):
    volume, prep = anisotropic
    requests, expected, results = run_parity(sam, volume, prep, 0, SLICES[1:])
    geometry = requests[0][0].geometry
    assert geometry.slice_shape == (101, 122) and geometry.model_shape == (231, 122)
    assert results[0].logits.shape[-2:] == (101, 122)
    assert expected[0][0]["model_logits"].shape[-2:] == (231, 122)


def test_parity_on_coronal_slices(sam, anisotropic):
    volume, prep = anisotropic
    requests, _, _ = run_parity(sam, volume, prep, 1, [50])
    assert requests[0][0].slice_shape == (5, 122) and requests[0][0].original_size == (21, 122)


def test_one_call_equals_separate_calls(sam, isotropic_encoded):
    encoded = isotropic_encoded
    point, box = first_prompts((101, 122))
    prompts = [Prompt(**point), Prompt(**box), Prompt(points=np.array([[30.0, 70.0]]), labels=np.array([1]))]
    together = decode(sam, encoded[1], prompts, max_batch=2)
    for b, prompt in enumerate(prompts):
        alone = decode(sam, encoded[1], prompt)
        assert np.abs(alone.logits[0] - together.logits[b]).max() < TOLERANCE


def test_mask_decoder_subclass_takes_the_per_prompt_path(sam, isotropic_encoded):
    encoded = isotropic_encoded
    point, _ = first_prompts((101, 122))
    requests = [(encoded[s], Prompt(**point)) for s in SLICES]
    fast = decode_slices(sam, requests)
    original = sam.mask_decoder.__class__
    sam.mask_decoder.__class__ = type("SubclassedMaskDecoder", (MaskDecoder,), {})
    try:
        slow = decode_slices(sam, requests)
    finally:
        sam.mask_decoder.__class__ = original
    for a, b in zip(fast, slow):
        assert np.abs(a.logits - b.logits).max() < TOLERANCE


def test_keep_logits_false_returns_masks_only(sam, isotropic_encoded):
    embedding = isotropic_encoded[1]
    result = decode(sam, embedding, Prompt(box=[10, 10, 60, 50]), keep_logits=False)
    assert result.logits is None and result.masks.shape == (1, 3, 101, 122)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(points=[[1.0, 2.0]]), "together"),
        (dict(points=[[1.0, 2.0, 3.0]], labels=[1]), r"\(N, 2\)"),
        (dict(points=[[1.0, 2.0]], labels=[1, 0]), "1 points but 2 labels"),
        (dict(box=[1, 2, 3]), "4 numbers"),
        (dict(mask_input=np.zeros((2, 256, 256))), "mask_input"),
    ],
)
def test_bad_prompts_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Prompt(**kwargs)


def test_empty_request_is_refused(sam):
    with pytest.raises(ValueError, match="Request 0 holds no prompt set"):
        decode_slices(sam, [(None, [])])


def test_max_batch_must_be_positive(sam):
    with pytest.raises(ValueError, match="max_batch must be >= 1, not 0"):
        decode_slices(sam, [(None, Prompt())], max_batch=0)
