"""Xie et al.'s joint decoder pass: every label's tokens in one pass.

Whether it separates touching structures better than per-label passes is measured by
benchmarks/bench_fewshot_joint.py (on the tiny random SAM it does not; README, few-shot section).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.fewshot import load_head, save_head
from SAMFewShotLib.fewshot.decoder import FewShotMaskDecoder
from SAMFewShotLib.fewshot.fit import fit_head
from SAMFewShotLib.fewshot.training import JointExample, TrainingConfig
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache
from SAMFewShotLib.sam.model_loading import load_sam
from SAMFewShotLib.sam.preprocess import Preprocessing
from SAMFewShotLib.volume import LabelVolume, Segment, Volume
from Testing import phantoms, tiny_sam
from Testing.fewshot.fewshot_cases import TINY_GLOBAL_ATTENTION


@pytest.fixture
def sam():
    return tiny_sam.build_tiny_sam(global_attn_indexes=TINY_GLOBAL_ATTENTION)


def _inputs(n_labels: int, batch: int = 2):
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn((batch, 32, 64, 64), generator=generator)
    tokens = [torch.randn((n, 32), generator=generator) for n in (3, 2, 4)[:n_labels]]
    return embeddings, tokens


def test_with_one_label_the_joint_pass_is_the_per_label_pass(sam):
    decoder = FewShotMaskDecoder.from_sam(sam, 1)
    embeddings, tokens = _inputs(1)
    with torch.no_grad():
        joint = decoder.forward_joint(embeddings, tokens)
        single = decoder(embeddings, tokens[0], 0)
    assert joint.shape == (2, 1, 2, 256, 256)
    torch.testing.assert_close(joint[:, 0], single, rtol=1e-5, atol=1e-5)


def test_each_label_sees_the_other_labels_tokens(sam):
    decoder = FewShotMaskDecoder.from_sam(sam, 2)
    embeddings, tokens = _inputs(2)
    with torch.no_grad():
        before = decoder.forward_joint(embeddings, tokens)
        changed = decoder.forward_joint(embeddings, [tokens[0], tokens[1] + 1.0])
    assert before.shape == (2, 2, 2, 256, 256)
    assert float((before[:, 0] - changed[:, 0]).abs().max()) > 1e-4  # label 0 depends on label 1's targets
    assert not torch.allclose(before[:, 0], before[:, 1])  # label embeddings tell the labels apart


def test_the_joint_pass_needs_every_labels_tokens(sam):
    decoder = FewShotMaskDecoder.from_sam(sam, 3)
    embeddings, tokens = _inputs(2)
    with pytest.raises(ValueError, match="all 3 labels"):
        decoder.forward_joint(embeddings, tokens)


def _two_label_case():
    shape = (7, 32, 32)
    left = phantoms.ellipsoid((3, 16, 10), (3.5, 8, 6), shape)
    right = phantoms.ellipsoid((3, 16, 22), (3.5, 8, 6), shape) & ~left
    image = Volume(phantoms.render(left | right, seed=1), spacing=(1.0, 1.0, 2.0))
    labels = np.zeros(shape, np.uint8)
    for z in (1, 3, 5):
        labels[z][left[z]] = 1
    for z in (1, 5):
        labels[z][right[z]] = 2
    segments = (Segment(1, "left"), Segment(2, "right"))
    return image, SparseAnnotation.from_labels(LabelVolume(image.with_array(labels), segments), axis=0)


def test_a_joint_fit_trains_per_slice_examples_and_the_head_remembers_it(tmp_path, monkeypatch):
    import SAMFewShotLib.fewshot.fit as fit_module

    built = {}
    original = fit_module._joint_examples

    def spy(*args):
        built["examples"] = original(*args)
        return built["examples"]

    monkeypatch.setattr(fit_module, "_joint_examples", spy)
    checkpoint = tiny_sam.save_tiny_checkpoint(tmp_path / "tiny.pth", global_attn_indexes=TINY_GLOBAL_ATTENTION)
    sam, loaded = load_sam(str(checkpoint))
    image, annotation = _two_label_case()
    fit = fit_head(sam, loaded, image, annotation, Preprocessing.for_volume(image), cache=EmbeddingCache.memory_only(),
                   config=TrainingConfig(iterations=2, joint=True))
    training, validation = built["examples"]
    assert all(isinstance(e, JointExample) for e in training + validation)
    # label 1 drawn on 1, 3, 5 (3 held out), label 2 on 1, 5: slices 1 and 5 train both labels
    assert {e.slice_index: e.supervised.tolist() for e in training} == {1: [True, True], 5: [True, True]}
    assert {e.slice_index: e.supervised.tolist() for e in validation} == {3: [True, False]}
    first = next(e for e in training if e.slice_index == 1)
    assert [tuple(t.shape) for t in first.tokens] == [(1, 32), (1, 32)]  # the other trained slice of each label
    assert fit.training.iterations == 2 and fit.head.joint
    again = load_head(save_head(fit.head, tmp_path / "head.sfs"))
    assert again.joint and torch.equal(
        again.decoder_state["label_embeddings"], fit.head.decoder_state["label_embeddings"]
    )


def test_a_head_without_label_embeddings_loads_as_before(sam, tmp_path):
    from SAMFewShotLib.fewshot.head import BaseModel, FewShotHead

    decoder = FewShotMaskDecoder.from_sam(sam, 2)
    state = {k: v for k, v in decoder.state_dict().items() if k != "label_embeddings"}
    head = FewShotHead((Segment(1, "a"), Segment(2, "b")), {1: torch.zeros((1, 32)), 2: torch.zeros((1, 32))}, state,
                       BaseModel("0" * 64), Preprocessing("percentile-1-99", 0.0, 1.0, True), 0)
    rebuilt = head.build_decoder(sam)
    assert not head.joint and float(rebuilt.label_embeddings.abs().max()) == 0.0
