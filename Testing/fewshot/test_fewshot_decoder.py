"""The few-shot decoder starts from SAM's pretrained pieces and leaves the SAM untouched."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.fewshot.decoder import FewShotMaskDecoder
from Testing import tiny_sam
from Testing.fewshot.fewshot_cases import TINY_GLOBAL_ATTENTION


@pytest.fixture
def sam():
    return tiny_sam.build_tiny_sam(global_attn_indexes=TINY_GLOBAL_ATTENTION)


def test_it_starts_as_sams_decoder_prompted_by_the_tokens(sam):
    decoder = FewShotMaskDecoder.from_sam(sam, 2)
    for mine, theirs in [(decoder.transformer, sam.mask_decoder.transformer),
                         (decoder.output_upscaling, sam.mask_decoder.output_upscaling),
                         (decoder.hypernetworks[0], sam.mask_decoder.output_hypernetworks_mlps[0])]:
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
    assert torch.equal(decoder.output_tokens[1, 1], sam.mask_decoder.mask_tokens.weight[0])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        logits = decoder(torch.randn((3, 32, 64, 64), generator=generator), torch.randn((4, 32), generator=generator), 1)
    assert logits.shape == (3, 2, 256, 256)
    assert float(logits[:, 1].abs().max()) == 0.0  # the bg channel starts at zero: p = sigmoid(fg)
    assert float(logits[:, 0].abs().max()) > 0.0


def test_training_it_leaves_the_sam_unchanged(sam):
    before = {k: v.clone() for k, v in sam.state_dict().items()}
    decoder = FewShotMaskDecoder.from_sam(sam, 1)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    loss = decoder(torch.randn((1, 32, 64, 64)), torch.randn((2, 32)), 0).square().mean()
    loss.backward()
    optimizer.step()
    changed = zip(decoder.transformer.parameters(), sam.mask_decoder.transformer.parameters())
    assert any(not torch.equal(a, b) for a, b in changed)  # the copy trained ...
    assert all(torch.equal(v, before[k]) for k, v in sam.state_dict().items())  # ... the SAM did not


@pytest.mark.parametrize("label_index", [-1, 2])
def test_a_label_index_outside_the_labels_is_refused(sam, label_index):
    decoder = FewShotMaskDecoder.from_sam(sam, 2)
    with pytest.raises(ValueError, match=str(label_index)):
        decoder(torch.zeros((1, 32, 64, 64)), torch.zeros((1, 32)), label_index)


def test_a_decoder_needs_a_label(sam):
    with pytest.raises(ValueError, match="n_labels"):
        FewShotMaskDecoder.from_sam(sam, 0)
