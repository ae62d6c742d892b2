"""EfficientViT-SAM (package efficientsam): a tiny model built from the package's own classes
with random weights is recognised from its keys, loaded through the same loader as SAM and
MobileSAM, and our cached, batched path (512-pixel encoder input, SAM's 1024 frame for prompts)
matches the package's ``EfficientViTSamPredictor`` on the same slices; the ONNX runtime matches
torch; the official L0/XL0 layouts are named from their shapes alone."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.sam import architecture as sa
from SAMFewShotLib.sam import checkpoints as ck
from SAMFewShotLib.sam import efficientvit as ev
from SAMFewShotLib.sam import model_loading as ml
from SAMFewShotLib.sam.decoder import Prompt, decode_slices
from SAMFewShotLib.sam.encoder import encode_slices
from SAMFewShotLib.sam.preprocess import Preprocessing, slice_rgb
from SAMFewShotLib.volume import Volume
from Testing.phantoms import ellipsoid, render
from Testing.sam.test_sam_decoder_parity import TOLERANCE, assert_matches, first_prompts, prompt_sets, reference
from Testing.sam.test_sam_engine import case  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(
    not ev.efficientvit_available(),
    reason="EfficientViT-SAM needs the package efficientsam (sam extra, Python >= 3.10)",
)

SHAPE = (4, 90, 118)  # non-square slices: the 512 input is padded, the 1024 frame cropped


def tiny_reference_model(seed: int = 11):
    """A narrow EfficientViT-SAM-L from the package's classes, random weights and BN statistics."""
    from efficientsam.models.efficientvit.backbone import EfficientViTLargeBackbone
    from efficientsam.models.efficientvit.sam import EfficientViTSam, EfficientViTSamImageEncoder, SamNeck
    from efficientsam.models.nn.norm import set_norm_eps
    from efficientsam.segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    torch.manual_seed(seed)
    backbone = EfficientViTLargeBackbone(width_list=[8, 16, 16, 32, 64], depth_list=[1, 1, 1, 1, 1])
    neck = SamNeck(["stage4", "stage3", "stage2"], [64, 32, 16], head_width=32, head_depth=1, expand_ratio=1,
                   middle_op="fmb")
    model = EfficientViTSam(
        EfficientViTSamImageEncoder(backbone, neck),
        PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16),
        MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=256, mlp_dim=64, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=32,
        ),
        image_size=(1024, 512),
    )
    set_norm_eps(model, 1e-6)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    reference_model = tiny_reference_model()
    path = tmp_path_factory.mktemp("efficientvit") / "tiny_efficientvit_sam.pt"
    torch.save({"state_dict": reference_model.state_dict()}, path)  # the package's own file layout
    return path, reference_model


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def loaded(tiny, tmp_path_factory):
    path, _ = tiny
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAMFEWSHOT_HOME", str(tmp_path_factory.mktemp("home")))
        return ml.load_sam(path)


@pytest.fixture(scope="module")
def volume():
    return Volume(render(ellipsoid((2, 45, 60), (3, 26, 38), SHAPE), seed=3), spacing=(0.8, 0.8, 2.0))


def test_tiny_checkpoint_is_recognised_and_loads_the_same_weights(tiny, loaded):
    _, reference_model = tiny
    model, info = loaded
    assert (info.family, info.model_type) == ("efficientvit_sam", "custom")
    e = info.architecture.encoder
    assert isinstance(e, ev.EfficientViTEncoderSpec)
    assert (e.variant, e.width_list, e.depth_list, e.head_width, e.head_depth, e.input_size) == (
        "l", (8, 16, 16, 32, 64), (1, 1, 1, 1, 1), 32, 1, 512
    )
    assert info.architecture.decoder.depth == 1 and info.architecture.decoder.mlp_dim == 64
    ours, theirs = model.state_dict(), reference_model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(model.image_encoder(x), reference_model.image_encoder(x))


def test_parity_with_efficientvit_sam_predictor(loaded, tiny, volume):
    from efficientsam.models.efficientvit.sam import EfficientViTSamPredictor

    model, _ = loaded
    _, reference_model = tiny
    prep = Preprocessing.from_percentiles(volume)
    encoded = encode_slices(model, "tiny-evit", volume, 0, [2], prep)
    requests, expected = [], []
    for index in (2,):
        embedding = encoded[index]
        rgb, geometry = slice_rgb(volume, 0, index, prep)
        predictor = EfficientViTSamPredictor(reference_model)
        predictor.set_image(rgb)
        assert tuple(predictor.input_size) == embedding.input_size  # SAM's 1024 frame, not 512
        torch.testing.assert_close(embedding.embedding, predictor.features[0], rtol=0, atol=TOLERANCE)
        point, _ = first_prompts(embedding.slice_shape)
        (first,) = reference(predictor, geometry, [Prompt(**point)])
        prompts = prompt_sets(embedding.slice_shape, first["low_res"])
        requests.append((embedding, prompts))
        expected.append(reference(predictor, geometry, prompts))
    for ours, outputs in zip(decode_slices(model, requests), expected):
        assert_matches(ours, outputs)


def test_onnx_runtime_matches_torch(loaded, volume, tmp_path):
    pytest.importorskip("onnxruntime")
    from SAMFewShotLib.sam import onnx_encoder as oe

    model, info = loaded
    prep = Preprocessing.from_percentiles(volume)
    encoder = oe.onnx_image_encoder(model, info.sha256, "onnx", num_threads=1, home=tmp_path)
    torch_run = encode_slices(model, info.sha256, volume, 0, [1], prep)
    onnx_run = encode_slices(model, info.sha256, volume, 0, [1], prep, image_encoder=encoder)
    difference = (torch_run[1].embedding - onnx_run[1].embedding).abs().max().item()
    assert difference < 1e-3
    prompt = [Prompt(points=np.array([[59.0, 45.0]]), labels=np.array([1]))]
    a, b = decode_slices(model, [(torch_run[1], prompt), (onnx_run[1], prompt)])
    assert np.abs(a.logits - b.logits).max() < 1e-3


@pytest.mark.parametrize("model_type", ["efficientvit_l0", "efficientvit_xl0"])
def test_official_layouts_are_named_from_their_shapes(model_type):
    from efficientsam.sam_model_zoo import create_efficientvit_sam_model

    name = {"efficientvit_l0": "efficientvit-sam-l0", "efficientvit_xl0": "efficientvit-sam-xl0"}[model_type]
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        state = create_efficientvit_sam_model(name, pretrained=False).state_dict()
    architecture = sa.infer_architecture(state)
    assert (architecture.model_type, architecture.family) == (model_type, "efficientvit_sam")
    assert architecture.encoder == sa.official_architecture(model_type).encoder
    assert architecture.encoder.input_size == (512 if "_l" in model_type else 1024)
    assert sa.infer_architecture(state, model_type=model_type).model_type == model_type
    with pytest.raises(ValueError, match="--model-type vit_b contradicts .*EfficientViT"):
        sa.infer_architecture(state, model_type="vit_b")


def test_registry_lists_the_five_published_checkpoints():
    entries = [e for e in ck.REGISTRY.values() if e.family == "efficientvit_sam"]
    assert [e.model_type for e in entries] == [
        "efficientvit_l0", "efficientvit_l1", "efficientvit_l2", "efficientvit_xl0", "efficientvit_xl1"
    ]
    assert all(e.sha256 and e.licence.startswith("Apache-2.0") for e in entries)
    # no published size: a renamed file is still recognised by its digest
    assert all(e in ck.entries_of_size(123) for e in entries)


def test_sam_engine_runs_with_an_efficientvit_checkpoint(tiny, case, tmp_path):  # noqa: F811
    from SAMFewShotLib.engines import make_engine
    from SAMFewShotLib.sam.embedding_cache import EmbeddingCache

    image, annotation, *_ = case
    path, _ = tiny
    cache = EmbeddingCache(directory=tmp_path / "embeddings")
    engine = make_engine("sam:interpolate", checkpoint=str(path), cache=cache)  # no elastix: quick
    prediction = engine.propagate(image, annotation)
    assert prediction.counters["slices_encoded"] > 0 and prediction.counters["budget_slices_to_encode"] > 0
    assert prediction.labels.array.shape == image.array.shape
