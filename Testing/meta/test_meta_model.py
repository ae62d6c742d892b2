"""The adapted ViT: exactly SAM's encoder at the plain init, gradients only into the adapters,
gradient checkpointing exact, the four stage blocks of the official ViTs."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.meta.model import AdaptedViT, stage_blocks
from SAMFewShotLib.sam.architecture import official_architecture
from SAMFewShotLib.sam.model_building import build_sam
from SAMFewShotLib.sam.model_loading import load_sam
from Testing.meta import meta_cases


@pytest.fixture(scope="module")
def sam(tmp_path_factory):
    path = meta_cases.small_sam_checkpoint(tmp_path_factory.mktemp("model") / "small.pth", seed=3)
    return load_sam(path)[0]


def test_plain_adapters_leave_sam_encoder_unchanged(sam):
    encoder = AdaptedViT(sam.image_encoder, rank=8)
    images = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        expected = sam.image_encoder(images)
        adapted = encoder(encoder.embed_patches(images))
    assert torch.equal(adapted.image_embedding, expected)
    assert len(adapted.stages) == 4 and adapted.stages[-1].shape == (2, 16, 16, 16)


def test_only_adapters_train_and_checkpointing_gives_the_same_gradients(sam):
    torch.manual_seed(0)
    encoder = AdaptedViT(sam.image_encoder, rank=8)
    with torch.no_grad():
        encoder.adapters.up.weight.normal_(0, 0.1)  # non-zero prompts
    patches = encoder.embed_patches(torch.randn(1, 3, 256, 256))
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("adapters.") for n in trainable)

    def grads(checkpointing: bool) -> list[torch.Tensor]:
        encoder.checkpointing = checkpointing
        encoder.zero_grad(set_to_none=True)
        out = encoder(patches)
        (out.image_embedding.square().mean() + sum(s.mean() for s in out.stages)).backward()
        return [p.grad.clone() for p in encoder.adapters.parameters()]

    with_checkpoints, without = grads(True), grads(False)
    assert all(g.abs().sum() > 0 for g in without)
    for a, b in zip(with_checkpoints, without):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_official_vit_b_stages_close_at_its_global_blocks():
    with torch.device("meta"):
        sam = build_sam(official_architecture("vit_b"))
    assert stage_blocks(sam.image_encoder) == [2, 5, 8, 11]


def test_mobile_sam_is_refused_with_one_line(tmp_path):
    class NotAViT(torch.nn.Module):
        pass

    with pytest.raises(ValueError, match="ViT image encoder") as error:
        AdaptedViT(NotAViT(), rank=4)
    assert "\n" not in str(error.value)
