"""Row-chunked global attention (sam/vit_attention.py): the reference's numbers, band by band,
for inference only, and a correct ONNX export."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("segment_anything")

import torch  # noqa: E402
from segment_anything.modeling.image_encoder import Attention  # noqa: E402

from SAMFewShotLib.sam import vit_attention  # noqa: E402
from SAMFewShotLib.sam.vit_attention import (  # noqa: E402
    RowChunkedAttention,
    install_row_chunked_attention,
    row_chunked_forward,
)
from Testing.tiny_sam import build_tiny_sam  # noqa: E402


def random_attention(dim: int = 32, heads: int = 4, grid: tuple[int, int] = (8, 6), rel_pos: bool = True) -> Attention:
    """An Attention block with random weights and, unlike SAM's zero init, random relative positions."""
    torch.manual_seed(1)
    module = Attention(dim, num_heads=heads, use_rel_pos=rel_pos, input_size=grid).eval()
    if rel_pos:
        torch.nn.init.normal_(module.rel_pos_h, std=0.5)
        torch.nn.init.normal_(module.rel_pos_w, std=0.5)
    return module


@pytest.mark.parametrize("rel_pos", [True, False])
@pytest.mark.parametrize("elements", [1, 700, 10**9])  # one row per band, 3 rows with a short last band, one band
def test_row_chunked_forward_equals_the_reference(monkeypatch, rel_pos, elements):
    module = random_attention(rel_pos=rel_pos)
    x = torch.randn(2, 8, 6, 32)
    monkeypatch.setattr(vit_attention, "SCORE_ELEMENTS_PER_CHUNK", elements)
    with torch.no_grad():
        reference = Attention.forward(module, x)
        chunked = row_chunked_forward(module, x)
    assert chunked.shape == reference.shape == (2, 8, 6, 32)
    assert float((chunked - reference).abs().max()) < 1e-5 * max(1.0, float(reference.abs().max()))


def tiny_encoder_with_positions():
    sam = build_tiny_sam(seed=3, depth=3, global_attn_indexes=(1, 2))
    for block in sam.image_encoder.blocks:
        torch.nn.init.normal_(block.attn.rel_pos_h, std=0.3)
        torch.nn.init.normal_(block.attn.rel_pos_w, std=0.3)
    return sam.image_encoder


def test_install_changes_only_the_global_blocks_and_keeps_the_encoder_output(monkeypatch):
    encoder = tiny_encoder_with_positions()
    reference = copy.deepcopy(encoder)
    assert install_row_chunked_attention(encoder) == 2
    assert [type(b.attn) for b in encoder.blocks] == [Attention, RowChunkedAttention, RowChunkedAttention]
    assert encoder.state_dict().keys() == reference.state_dict().keys()
    monkeypatch.setattr(vit_attention, "SCORE_ELEMENTS_PER_CHUNK", 50_000)  # several bands on the 64 x 64 grid
    image = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        expected, got = reference(image), encoder(image)
    assert float((got - expected).abs().max()) < 1e-4 * float(expected.abs().max())
    assert install_row_chunked_attention(torch.nn.Linear(2, 2)) == 0  # not a ViT: untouched


def test_with_gradients_the_reference_forward_runs_and_trains_the_same(monkeypatch):
    module = random_attention()
    chunked = copy.deepcopy(module)
    chunked.__class__ = RowChunkedAttention
    called = []
    monkeypatch.setattr(vit_attention, "row_chunked_forward", lambda *a: called.append(1) or module(*a[1:]))
    x = torch.randn(1, 8, 6, 32)
    chunked(x).square().sum().backward()
    module(x).square().sum().backward()
    assert not called  # gradients: the reference path
    for a, b in zip(chunked.parameters(), module.parameters()):
        assert torch.equal(a.grad, b.grad)


def test_the_exported_onnx_graph_keeps_the_relative_positions(tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from SAMFewShotLib.sam.onnx_encoder import export_encoder

    encoder = tiny_encoder_with_positions()
    with torch.no_grad():
        image = torch.randn(1, 3, 1024, 1024)
        expected = encoder(image).numpy()
    install_row_chunked_attention(encoder)
    monkeypatch.setattr(vit_attention, "SCORE_ELEMENTS_PER_CHUNK", 50_000)
    path = export_encoder(encoder, tmp_path / "encoder.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-3 * np.abs(expected).max()
