"""The SSM-SAM network: deterministic plain init, what trains, state loading, decode geometry."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import numpy as np
import torch

from SAMFewShotLib.meta.config import MetaConfig
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
    assert not any(n.startswith("encoder.encoder.") or n.startswith("prompt_encoder.") for n in names)
    for part in ("encoder.adapters.", "prompt.", "decoder.blocks.", "decoder.fusion", "decoder.mask_decoder."):
        assert any(n.startswith(part) for n in names), part
    assert not any("iou_prediction_head" in n for n in names)


def test_a_state_of_another_network_is_refused(checkpoint):
    net = network(checkpoint)
    state = network(checkpoint, adapter_rank=8).trainable_state()
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
