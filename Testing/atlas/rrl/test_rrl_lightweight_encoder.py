"""The lightweight encoder: SAM-compatible embeddings, size bound, 3D feature pyramid."""

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.atlas.rrl.lightweight_encoder import VIT_B_ENCODER_PARAMETERS, LightweightEncoder, parameter_count
from SAMFewShotLib.atlas.rrl.volume_features import sam_domain, volume_pyramid


def test_default_encoder_is_within_five_percent_of_vit_b():
    encoder = LightweightEncoder()
    assert parameter_count(encoder) <= 0.05 * VIT_B_ENCODER_PARAMETERS


def test_embedding_has_sam_shape():
    torch.manual_seed(0)
    encoder = LightweightEncoder(embed_dim=32, widths=(8, 8, 16, 16), depths=(0, 1, 1, 1)).eval()
    with torch.no_grad():
        out = encoder(torch.randn(1, 3, 1024, 1024))
    assert out.shape == (1, 32, 64, 64)


def test_volume_pyramid_is_stacked_and_pooled_per_stage():
    torch.manual_seed(0)
    encoder = LightweightEncoder(embed_dim=16, widths=(4, 8, 8, 16), depths=(0, 1, 1, 1)).eval()
    volume = torch.rand(2, 1, 16, 32, 16)
    with torch.no_grad():
        pyramid = volume_pyramid(encoder, volume)
        stages = encoder.stages(sam_domain(volume[1, :, 3:4].permute(1, 0, 2, 3)))  # slice z=3 of volume 1
    assert [tuple(p.shape) for p in pyramid] == [
        (2, 4, 8, 16, 8), (2, 8, 4, 8, 4), (2, 8, 2, 4, 2), (2, 16, 1, 2, 1)
    ]
    # level 0 (stride 2): z-slices 2 and 3 averaged into z index 1
    with torch.no_grad():
        slice2 = encoder.stages(sam_domain(volume[1, :, 2:3].permute(1, 0, 2, 3)))[0]
    torch.testing.assert_close(pyramid[0][1, :, 1], ((slice2 + stages[0]) / 2)[0], rtol=1e-5, atol=1e-5)


def test_volume_pyramid_refuses_sizes_that_do_not_divide():
    encoder = LightweightEncoder(embed_dim=16, widths=(4, 8, 8, 16), depths=(0, 0, 0, 0))
    with pytest.raises(ValueError, match="multiples of 16"):
        volume_pyramid(encoder, torch.rand(1, 1, 16, 24, 16))
    with pytest.raises(ValueError, match="widths"):
        LightweightEncoder(widths=(4, 8, 16))


def test_vit_b_parameter_count_constant_matches_segment_anything():
    from SAMFewShotLib.sam.architecture import official_architecture
    from SAMFewShotLib.sam.model_building import build_sam

    sam = build_sam(official_architecture("vit_b"), init_weights=False)
    assert parameter_count(sam.image_encoder) == VIT_B_ENCODER_PARAMETERS
