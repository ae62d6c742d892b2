"""MobileSAM (vit_t): a TinyViT image encoder from the pinned mobilesam-mirror package,
recognised from its keys and loaded through the same loader as SAM's ViTs."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.sam import architecture as sa
from SAMFewShotLib.sam import model_building as mb
from SAMFewShotLib.sam import model_loading as ml
from Testing.sam.sam_weights_helpers import encoder_output, same_weights

pytestmark = pytest.mark.skipif(
    not mb.tiny_vit_available(),
    reason="MobileSAM's TinyViT needs the packages mobilesam-mirror and timm (the sam extra)",
)

# Narrow TinyViT: MobileSAM's TinyViT keeps SAM's 64x64 grid only with a 320/448/576-wide last stage.
TINY = sa.SamArchitecture(
    model_type=sa.CUSTOM,
    encoder=sa.TinyViTEncoderSpec(
        embed_dims=(8, 16, 16, 320),
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 2, 10),
        window_sizes=(7, 7, 14, 7),
        mlp_ratio=1.0,
        mbconv_expand_ratio=2.0,
        num_classes=10,
    ),
    decoder=sa.DecoderSpec(prompt_dim=256, depth=1, mlp_dim=64, num_heads=8, iou_head_hidden_dim=32),
)


@pytest.fixture(scope="module")
def tiny_vit_file(tmp_path_factory):
    torch.manual_seed(7)
    model = mb.build_sam(TINY).eval()
    path = tmp_path_factory.mktemp("vit_t") / "tiny_mobile_sam.pt"
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path / "home"))


def test_tiny_vit_checkpoint_loads_and_reproduces_the_saved_model(tiny_vit_file):
    path, saved = tiny_vit_file
    model, info = ml.load_sam(path)
    assert info.family == "mobile_sam" and info.model_type == "custom"
    assert info.architecture.decoder == TINY.decoder
    e = info.architecture.encoder
    assert (e.embed_dims, e.depths, e.num_heads[1:], e.window_sizes[1:]) == (
        (8, 16, 16, 320),
        (1, 1, 1, 1),
        (1, 2, 10),
        (7, 14, 7),
    )
    assert (e.mlp_ratio, e.mbconv_expand_ratio, e.local_conv_size, e.num_classes) == (1.0, 2.0, 3, 10)
    out = encoder_output(model)
    assert out.shape == (1, 256, 64, 64)
    assert torch.equal(out, encoder_output(saved))


def test_official_mobile_sam_layout_is_vit_t(tmp_path):
    arch = sa.official_architecture("vit_t")
    torch.manual_seed(0)
    state = mb.build_sam(arch).state_dict()
    path = tmp_path / "mobile_sam_layout.pt"
    torch.save(state, path)
    model, info = ml.load_sam(path, model_type="vit_t")
    assert (info.model_type, info.family) == ("vit_t", "mobile_sam")
    assert same_weights(model.state_dict(), state)
    inferred = sa.infer_architecture(state)
    assert inferred.model_type == "vit_t" and inferred.family == "mobile_sam"
    assert inferred.encoder.embed_dims == (64, 128, 160, 320) and inferred.encoder.depths == (2, 2, 6, 2)
    assert sa.infer_architecture(state, model_type="vit_t").model_type == "vit_t"
    with pytest.raises(ValueError, match="--model-type vit_b contradicts .*TinyViT"):
        sa.infer_architecture(state, model_type="vit_b")


def test_model_type_vit_t_rejects_a_narrow_tiny_vit(tiny_vit_file):
    path, _ = tiny_vit_file
    with pytest.raises(ValueError, match="--model-type vit_t contradicts"):
        ml.load_sam(path, model_type="vit_t")
