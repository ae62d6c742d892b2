"""The ONNX Runtime image encoder (sam/onnx_encoder.py): parity with the torch fp32 encoder on
tiny SAM (ViT) and tiny MobileSAM (TinyViT) models with random weights, the export cached by
the checkpoint's sha256, the int8 variant opt-in and cached under its own embedding key."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import torch

from SAMFewShotLib.sam import model_building as mb
from SAMFewShotLib.sam import onnx_encoder as oe
from SAMFewShotLib.sam.decoder import Prompt, decode_slices
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache
from SAMFewShotLib.sam.encoder import encode_slices
from SAMFewShotLib.sam.preprocess import Preprocessing
from SAMFewShotLib.volume import Volume
from Testing.phantoms import ellipsoid, render
from Testing.tiny_sam import build_tiny_sam

TOLERANCE = 1e-3
SHAPE = (4, 90, 110)
SLICES = [1, 2]
SHA = "ab" * 32


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One weights store for the module: each tiny model is exported once."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def vit(home):
    """A tiny SAM and its ONNX fp32 encoder."""
    sam = build_tiny_sam(seed=4)
    return sam, oe.onnx_image_encoder(sam, SHA, "onnx", num_threads=1, home=home)


@pytest.fixture(scope="module")
def volume():
    return Volume(render(ellipsoid((2, 45, 55), (3, 25, 35), SHAPE), seed=2), spacing=(0.8, 0.8, 2.0))


def tiny_tiny_vit():
    from Testing.sam.test_model_loading_tiny_vit import TINY

    torch.manual_seed(5)
    return mb.build_sam(TINY).eval()


MODELS = [
    pytest.param(lambda: build_tiny_sam(seed=4), id="vit"),
    pytest.param(
        tiny_tiny_vit,
        id="tiny_vit",
        marks=pytest.mark.skipif(not mb.tiny_vit_available(), reason="needs mobilesam-mirror and timm"),
    ),
]


def prompts(volume):
    rows, cols = volume.array.shape[1:]
    return [
        Prompt(points=np.array([[cols * 0.5, rows * 0.5]]), labels=np.array([1])),
        Prompt(box=np.array([cols * 0.2, rows * 0.2, cols * 0.8, rows * 0.8])),
    ]


@pytest.mark.parametrize("build", MODELS)
def test_onnx_fp32_matches_torch_fp32_on_embeddings_logits_and_masks(build, volume, vit, tmp_path):
    sam, encoder = vit
    if build is not MODELS[0].values[0]:
        sam = build()
        encoder = oe.onnx_image_encoder(sam, "ef" * 32, "onnx", num_threads=1, home=tmp_path)
    prep = Preprocessing.from_percentiles(volume)
    reference = encode_slices(sam, SHA, volume, 0, SLICES, prep, batch_size=2)
    onnx = encode_slices(sam, SHA, volume, 0, SLICES, prep, batch_size=2, image_encoder=encoder)
    assert onnx.stats.slices_encoded == 2 and onnx.stats.encoder_calls == 1  # one batch of two
    for z in SLICES:
        difference = (onnx[z].embedding - reference[z].embedding).abs().max().item()
        assert difference < TOLERANCE, (z, difference)
    sets = prompts(volume)
    expected = decode_slices(sam, [(reference[z], sets) for z in SLICES])
    got = decode_slices(sam, [(onnx[z], sets) for z in SLICES])
    for e, g in zip(expected, got):
        assert np.abs(e.logits - g.logits).max() < TOLERANCE
        assert np.abs(e.low_res_logits - g.low_res_logits).max() < TOLERANCE
        assert np.array_equal(e.masks, g.masks)


def test_export_is_cached_by_sha256_and_reused(vit, home, monkeypatch):
    sam, encoder = vit
    path = encoder.path
    assert path == oe.cached_encoder_path(SHA, home=home) and path.is_file()
    assert path.parent.name == SHA and path.parent.parent.name == "onnx"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left

    def fail(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(oe, "export_encoder", fail)
    assert oe.ensure_onnx_encoder(sam.image_encoder, SHA, "onnx", home) == path
    with pytest.raises(AssertionError, match="exported again"):
        oe.ensure_onnx_encoder(sam.image_encoder, "cd" * 32, "onnx", home)


def test_int8_is_its_own_file_and_its_own_cache_entry(volume, vit, home):
    sam, fp32 = vit
    prep = Preprocessing.from_percentiles(volume)
    cache = EmbeddingCache.memory_only()
    int8 = oe.onnx_image_encoder(sam, SHA, "onnx-int8", home=home)
    assert int8.path != fp32.path and int8.path.name == f"encoder-int8-v{oe.GRAPH_VERSION}.onnx"
    assert (fp32.precision, int8.precision) == ("onnx-fp32", "onnx-int8")
    first = encode_slices(sam, SHA, volume, 0, [1], prep, cache, image_encoder=fp32)
    second = encode_slices(sam, SHA, volume, 0, [1], prep, cache, image_encoder=int8)
    third = encode_slices(sam, SHA, volume, 0, [1], prep, cache)
    assert (first.stats.slices_encoded, second.stats.slices_encoded, third.stats.slices_encoded) == (1, 1, 1)
    assert second[1].embedding.shape == first[1].embedding.shape
    again = encode_slices(sam, SHA, volume, 0, [1], prep, cache, image_encoder=int8)
    assert again.stats.cache_hits == 1 and again.stats.encoder_calls == 0


def test_unknown_runtime_and_bf16_with_onnx_are_refused(volume, vit):
    with pytest.raises(ValueError, match="'tensorrt'"):
        oe.check_runtime("tensorrt")
    sam, encoder = vit
    with pytest.raises(ValueError, match="bfloat16"):
        encode_slices(
            sam, SHA, volume, 0, [1], Preprocessing.from_percentiles(volume), dtype=torch.bfloat16,
            image_encoder=encoder,
        )
    with pytest.raises(ValueError, match="sha256"):
        oe.cached_encoder_path("../../etc")


def test_auto_picks_onnx_on_the_cpu_only(monkeypatch):
    assert oe.resolve_runtime("auto", "cpu") == "onnx"
    assert oe.resolve_runtime("auto", "cuda") == "torch"
    assert oe.resolve_runtime("torch", "cpu") == "torch"
    assert oe.resolve_runtime("onnx-int8", "cpu") == "onnx-int8"
    monkeypatch.setattr(oe, "onnx_available", lambda: False)
    assert oe.resolve_runtime("auto", "cpu") == "torch"
    with pytest.raises(ValueError, match="samfewshot\\[onnx\\]"):
        oe.resolve_runtime("onnx", "cpu")


def test_a_light_encoder_encodes_slices_concurrently_with_the_same_embeddings(vit, volume, home, monkeypatch):
    sam, serial = vit
    concurrent = oe.onnx_image_encoder(sam, SHA, "onnx", num_threads=2, home=home)  # tiny: a light encoder
    assert serial.slices_per_call == 1 and concurrent.slices_per_call == 2
    assert concurrent.session.get_session_options().intra_op_num_threads == 1  # one thread per slice
    prep = Preprocessing.for_volume(volume)
    slices = [0, 1, 2, 3]
    one_by_one = encode_slices(sam, SHA, volume, 0, slices, prep, image_encoder=serial)
    together = encode_slices(sam, SHA, volume, 0, slices, prep, image_encoder=concurrent)
    assert (one_by_one.stats.encoder_calls, together.stats.encoder_calls) == (4, 2)
    for z in slices:
        assert torch.equal(one_by_one[z].embedding, together[z].embedding)
    monkeypatch.setattr(oe, "LIGHT_ENCODER_PARAMETERS", 0)  # a heavy encoder keeps every thread on one slice
    heavy = oe.onnx_image_encoder(sam, SHA, "onnx", num_threads=2, home=home)
    assert heavy.slices_per_call == 1 and heavy.session.get_session_options().intra_op_num_threads == 2
