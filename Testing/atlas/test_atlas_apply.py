"""apply_bundle: registration of every atlas, fusion, SAM refinement, and argument checks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from SAMFewShotLib.atlas.apply import apply_bundle, check_refine
from SAMFewShotLib.atlas.bundle import load_bundle, write_bundle
from SAMFewShotLib.atlas.deformation import deform_case
from SAMFewShotLib.atlas.sam_refinement import refine_with_sam
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache
from Testing import tiny_sam
from Testing.atlas.atlas_phantom import FAST, mean_dice, phantom


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("atlas_apply")
    image, labels = phantom((32, 36, 36), seed=7)
    atlases = [(image, labels), deform_case(image, labels, 5.0, control_spacing_mm=24.0, seed=11)]
    target, truth = deform_case(image, labels, 5.0, control_spacing_mm=24.0, seed=12)
    bundle = load_bundle(write_bundle(folder / "two.zip", name="two", atlases=atlases, parameters=FAST))
    return bundle, target, truth, folder


@pytest.mark.slow
def test_two_atlases_are_registered_and_fused(case):
    bundle, target, truth, _ = case
    stages = []
    result = apply_bundle(bundle, target, fusion="staple", progress=lambda s, d, t: stages.append((s, d, t)))
    assert result.labels.volume.same_grid(target)
    assert [s.name for s in result.labels.segments] == ["liver", "spleen", "kidney"]
    assert {"register atlas 0", "register atlas 1", "fuse", "total"} <= set(result.seconds)
    assert result.details["fusion"] == "staple" and result.details["atlases"] == 2
    assert ("atlases registered", 2, 2) in stages
    assert mean_dice(result.labels.array, truth.array) > mean_dice(bundle.atlas(0)[1].array, truth.array)


def test_sam_refinement_encodes_only_the_labelled_slices_and_uses_the_cache(case):
    _, target, truth, folder = case
    checkpoint = tiny_sam.save_tiny_checkpoint(folder / "tiny.pth")
    cache = EmbeddingCache(directory=folder / "embeddings")
    array = np.zeros_like(truth.array)
    array[14:17] = truth.array[14:17]  # three labelled slices (SAM encodes only those) ...
    array[14][array[14] == 3] = 0
    array[14, 0, 0] = 3  # ... where a one-pixel component gets no prompt: the atlas mask is kept
    coarse = truth.with_array(array)
    refined, counters = refine_with_sam(target, coarse, str(checkpoint), device="cpu", cache=cache)
    covered = 3
    assert counters["slices_encoded"] == covered and counters["encoder_calls"] == covered
    assert counters["decoder_calls"] > 0 and counters["axis"] == 0
    assert refined.volume.same_grid(target) and refined.segments == coarse.segments
    assert refined.array[14, 0, 0] == 3
    assert not refined.array[:14].any() and not refined.array[17:].any()  # nothing where the atlas has nothing
    again, counters = refine_with_sam(target, coarse, str(checkpoint), device="cpu", cache=cache)
    assert counters["encoder_calls"] == 0 and counters["cache_hits"] == covered
    np.testing.assert_array_equal(again.array, refined.array)


@pytest.mark.parametrize(
    "refine, checkpoint, message",
    [
        ("sam", None, "--refine sam needs --checkpoint"),
        (None, "x.pth", "--checkpoint is only used with --refine sam"),
        ("medsam", "x.pth", "Refinement must be one of sam, not 'medsam'"),
    ],
)
def test_refinement_arguments_are_checked(refine, checkpoint, message):
    with pytest.raises(ValueError, match=message):
        check_refine(refine, checkpoint)


@pytest.mark.parametrize(
    "options, message",
    [({"fusion": "vote"}, "Fusion must be one of"), ({"device": "tpu"}, "Device must be one of auto, cpu, cuda, mps")],
)
def test_bad_options_fail_before_any_work(case, options, message):
    bundle, target, *_ = case
    with pytest.raises(ValueError, match=message):
        apply_bundle(bundle, target, **options)


def test_a_bundle_with_unknown_registration_settings_is_refused_before_registering(case, tmp_path):
    bundle, target, *_ = case
    image, labels = bundle.atlas(0)
    odd = load_bundle(write_bundle(tmp_path / "odd", name="odd", atlases=[(image, labels)], parameters={"bogus": 1}))
    with pytest.raises(ValueError, match=r"odd: Unknown registration parameter 'bogus'"):
        apply_bundle(odd, target)
