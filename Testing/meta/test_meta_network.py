"""The SSM-SAM network: deterministic plain init, what trains, state loading, decode geometry."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import numpy as np
import torch

from SAMFewShotLib.meta.config import MetaConfig
from SAMFewShotLib.meta.mask_attention_block import FlexibleMaskAttention
from SAMFewShotLib.meta.network import SSMSam
from SAMFewShotLib.meta.slices import prepare
from SAMFewShotLib.sam.model_loading import load_sam
from SAMFewShotLib.sam.preprocess import Preprocessing
from Testing.meta import meta_cases


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return meta_cases.small_sam_checkpoint(tmp_path_factory.mktemp("network") / "small.pth", seed=4)


def network(checkpoint, **config) -> SSMSam:
    return SSMSam(load_sam(checkpoint)[0], MetaConfig(**config))


def test_plain_init_is_deterministic_and_leaves_the_global_rng_alone(checkpoint):
    sam = load_sam(checkpoint)[0]
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = SSMSam(sam, MetaConfig()).trainable_state()
    assert torch.rand(1) == before
    b = network(checkpoint).trainable_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = network(checkpoint, seed=1).trainable_state()
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_sam_is_frozen_and_the_new_modules_train(checkpoint):
    net = network(checkpoint)
    names = list(net.trainable())
    assert not any(n.startswith("encoder.encoder.") for n in names)
    for part in ("encoder.adapters.", "prompt.", "decoder.blocks.", "decoder.fusion.", "decoder.hypernetwork."):
        assert any(n.startswith(part) for n in names), part
    assert not any("mask_decoder" in n or "prompt_encoder" in n for n in dict(net.named_parameters()))


class Refuse(torch.nn.Module):
    def forward(self, *args, **kwargs):
        raise AssertionError("SAM's prompt encoder / mask decoder was called")


def test_the_decode_path_uses_neither_sams_prompt_encoder_nor_its_mask_decoder(checkpoint):
    net = network(checkpoint)
    net.sam.prompt_encoder, net.sam.mask_decoder = Refuse(), Refuse()
    volume, truth = meta_cases.textured_case(0, shape=(6, 40, 30))
    prep = Preprocessing.for_volume(volume)
    query, support = (prepare(net.sam, volume, 0, z, prep, truth[z]) for z in (2, 3))
    with torch.no_grad():
        fq, fs = (net.features(net.embed([e.item])) for e in (query, support))
        assert net.decode_example(fq, query, fs, support).shape == (40, 30)


def test_flexible_mask_attention_is_eq_7_to_10():
    """O = InsNorm((A V) * F), A = softmax(l2(Q) l2(K)^T / tau), Q = F W^Q, K = F_s W^K, V = M' W^V
    (F enters through its per-channel affine gate, which starts as F + 1)."""
    torch.manual_seed(0)
    block = FlexibleMaskAttention(stage_dim=6, dim=4, heads=1, temperature=0.1, key_pool=1, norm_eps=1e-5)
    query, support = torch.randn(1, 6, 5, 5), torch.randn(1, 6, 5, 5)
    mask = (torch.rand(1, 1, 5, 5) > 0.5).float()
    f = block.project(query).flatten(2)[0].T  # (25, d)
    fs = block.project(support).flatten(2)[0].T
    q = torch.nn.functional.normalize(f @ block.w_q.weight.T, dim=-1)
    k = torch.nn.functional.normalize(fs @ block.w_k.weight.T, dim=-1)
    v = mask.flatten()[:, None] @ block.w_v.weight.T  # (25, d): the mask itself, lifted by W^V
    a = torch.softmax(q @ k.T / 0.1, dim=-1)
    product = ((a @ v) * (f + 1)).T.reshape(1, 4, 5, 5)
    expected = torch.nn.functional.instance_norm(product, eps=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(block(query, support, mask).numpy(), expected.numpy(), atol=1e-5)
    # the mask is the only value: without it the output carries nothing
    assert block(query, support, torch.zeros_like(mask)).abs().max() == 0.0


def test_a_state_of_another_network_is_refused(checkpoint):
    net = network(checkpoint)
    state = network(checkpoint, decoder_dim=16).trainable_state()
    with pytest.raises(ValueError, match="does not fit"):
        net.load_trainable_state(state)
    partial = dict(net.trainable_state())
    partial.pop(next(iter(partial)))
    with pytest.raises(ValueError, match="missing"):
        net.load_trainable_state(partial)


def test_decode_gives_logits_on_the_slice_grid_even_with_non_square_pixels(checkpoint):
    volume, truth = meta_cases.textured_case(0, shape=(6, 40, 30))
    volume = type(volume)(volume.array, spacing=(0.8, 1.2, 2.0))  # x 0.8 mm, y 1.2 mm: resampled for SAM
    net = network(checkpoint)
    prep = Preprocessing.for_volume(volume)
    query, support = (prepare(net.sam, volume, 0, z, prep, truth[z]) for z in (2, 3))
    with torch.no_grad():
        fq, fs = (net.features(net.embed([e.item])) for e in (query, support))
        logits = net.decode_example(fq, query, fs, support)
        empty_prior = net.decode_example(fq, query, fs, support, prior=np.zeros_like(truth[2]))
    assert logits.shape == (40, 30) and empty_prior.shape == (40, 30)
    assert torch.isfinite(logits).all()


def test_the_prior_reaches_the_fusion_only_with_the_prior_in_fusion_deviation(checkpoint):
    volume, truth = meta_cases.textured_case(0, shape=(6, 40, 30))
    outputs = {}
    for deviation in (False, True):
        net = network(checkpoint, prior_in_fusion=deviation, positive_points=1, negative_points=0)
        assert net.decoder.fusion[0].in_channels == 4 * net.config.decoder_dim + int(deviation)
        prep = Preprocessing.for_volume(volume)
        query, support = (prepare(net.sam, volume, 0, z, prep, truth[z]) for z in (2, 3))
        with torch.no_grad():
            fq, fs = (net.features(net.embed([e.item])) for e in (query, support))
            shifted = np.roll(truth[2], 6, axis=1)  # same area, elsewhere
            outputs[deviation] = [net.decode_example(fq, query, fs, support, prior=p) for p in (truth[2], shifted)]
    with_prior = outputs[True]
    assert not torch.allclose(with_prior[0], with_prior[1])
