"""Architecture inference and loading of ViT SAM checkpoints through the real loader."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.sam import architecture as sa
from SAMFewShotLib.sam import model_loading as ml
from Testing import tiny_sam
from Testing.sam.sam_weights_helpers import encoder_output, same_weights, save_tiny


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("ckpt") / "tiny.pth", seed=3)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path / "home"))


def _official_state_dict(model_type: str) -> dict:
    """Shapes of an official SAM without allocating it (meta tensors)."""
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        return sam_model_registry[model_type]().state_dict()


def test_loaded_tiny_model_reproduces_the_saved_one(tiny_file):
    saved = tiny_sam.build_tiny_sam(seed=3)
    model, info = ml.load_sam(tiny_file)
    assert not model.training
    assert torch.equal(encoder_output(model), encoder_output(saved))
    # the prompt encoder and mask decoder (with the inferred head count) match as well
    points = (torch.tensor([[[300.0, 500.0]]]), torch.tensor([[1]]))
    embedding = torch.randn(1, 32, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs = []
        for sam in (saved, model):
            sparse, dense = sam.prompt_encoder(points=points, boxes=None, masks=None)
            outputs.append(
                sam.mask_decoder(
                    image_embeddings=embedding,
                    image_pe=sam.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=True,
                )
            )
    assert all(torch.equal(a, b) for a, b in zip(*outputs, strict=True))
    assert info.name == "tiny" and info.model_type == "custom" and info.family == "sam"
    assert info.path == tiny_file and len(info.sha256) == 64


def test_tiny_architecture_is_inferred_from_shapes(tiny_file):
    arch = ml.inspect_checkpoint(tiny_file)
    e, d = arch.encoder, arch.decoder
    assert (e.embed_dim, e.depth, e.num_heads, e.global_attn_indexes, e.window_size) == (32, 2, 2, (1,), 14)
    assert (e.mlp_ratio, e.out_chans, e.img_size, e.patch_size) == (4.0, 32, 1024, 16)
    assert (d.prompt_dim, d.mlp_dim, d.depth, d.num_heads, d.iou_head_hidden_dim, d.mask_in_chans) == (
        32,
        64,
        2,
        2,
        32,
        16,
    )


def test_another_tiny_layout_loads_through_the_same_loader(tmp_path):
    kwargs = dict(embed_dim=48, depth=3, num_heads=4, global_attn_indexes=(0, 2), window_size=7)
    path = save_tiny(tmp_path / "other.pth", seed=5, **kwargs)
    model, info = ml.load_sam(path)
    e = info.architecture.encoder
    assert (e.embed_dim, e.depth, e.num_heads, e.global_attn_indexes, e.window_size) == (48, 3, 4, (0, 2), 7)
    saved = tiny_sam.build_tiny_sam(seed=5, **kwargs)
    assert same_weights(model.state_dict(), saved.state_dict())


@pytest.mark.parametrize(
    "model_type, layout",
    [
        ("vit_b", (768, 12, 12, (2, 5, 8, 11))),
        ("vit_l", (1024, 24, 16, (5, 11, 17, 23))),
        ("vit_h", (1280, 32, 16, (7, 15, 23, 31))),
    ],
)
def test_official_layouts_are_recognised(model_type, layout):
    arch = sa.infer_architecture(_official_state_dict(model_type))
    e = arch.encoder
    assert arch.model_type == model_type and arch.family == "sam"
    assert (e.embed_dim, e.depth, e.num_heads, e.global_attn_indexes) == layout
    assert (e.window_size, e.out_chans, arch.decoder.num_heads, arch.decoder.mlp_dim) == (14, 256, 8, 2048)
    assert arch == sa.official_architecture(model_type)


def test_model_type_confirms_or_contradicts_the_weights(tiny_file):
    state = _official_state_dict("vit_b")
    assert sa.infer_architecture(state, model_type="vit_b").model_type == "vit_b"
    with pytest.raises(ValueError, match="--model-type vit_h contradicts .*vit_b"):
        sa.infer_architecture(state, model_type="vit_h")
    with pytest.raises(ValueError, match="--model-type vit_t contradicts"):
        sa.infer_architecture(state, model_type="vit_t")
    with pytest.raises(ValueError, match="--model-type vit_b contradicts .*width 32 and depth 2"):
        ml.load_sam(tiny_file, model_type="vit_b")
    with pytest.raises(ValueError, match="Unknown architecture 'vit_q'; choose one of vit_b, vit_l, vit_h, vit_t"):
        ml.load_sam(tiny_file, model_type="vit_q")


@pytest.mark.parametrize("wrap", ["model", "state_dict", "module"])
def test_nested_and_prefixed_state_dicts_load(tmp_path, wrap):
    state = tiny_sam.build_tiny_sam(seed=2).state_dict()
    if wrap == "module":
        payload = {f"module.{k}": v for k, v in state.items()}
    else:
        payload = {wrap: state, "epoch": 3}
    path = tmp_path / f"{wrap}.pth"
    torch.save(payload, path)
    model, _ = ml.load_sam(path)
    assert same_weights(model.state_dict(), state)


def test_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="Checkpoint file not found") as error:
        ml.load_sam(tmp_path / "absent.pth")
    assert "\n" not in str(error.value)


def test_truncated_file_is_refused(tmp_path, tiny_file):
    data = tiny_file.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt") as error:
        ml.load_sam(cut)
    assert "\n" not in str(error.value)


def test_pickled_whole_model_is_not_unpickled(tmp_path):
    path = tmp_path / "whole.pth"
    torch.save(tiny_sam.build_tiny_sam(), path)
    with pytest.raises(ValueError, match="pickled Python objects") as error:
        ml.load_sam(path)
    assert "\n" not in str(error.value)


def test_checkpoint_of_another_family_names_what_it_found(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(
        ValueError, match=r"not a SAM checkpoint: it has no image_encoder\.\* weights \(found conv1\.weight"
    ) as error:
        ml.load_sam(path)
    assert "\n" not in str(error.value)


def test_encoder_only_and_non_tensor_files_are_refused(tmp_path):
    state = tiny_sam.build_tiny_sam().state_dict()
    encoder_only = tmp_path / "encoder.pth"
    torch.save({k: v for k, v in state.items() if k.startswith("image_encoder.")}, encoder_only)
    with pytest.raises(ValueError, match="no prompt_encoder.* or mask_decoder.* weights"):
        ml.load_sam(encoder_only)
    numbers = tmp_path / "numbers.pth"
    torch.save({"epoch": 3, "lr": 0.1}, numbers)
    with pytest.raises(ValueError, match="holds no tensors"):
        ml.load_sam(numbers)


def test_strict_loading_reports_unexpected_weights(tmp_path):
    state = dict(tiny_sam.build_tiny_sam().state_dict())
    state["mask_decoder.extra_head.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="unexpected mask_decoder.extra_head.weight"):
        ml.load_sam(path)


def test_registry_file_name_with_wrong_content_is_caught_before_loading(tmp_path, tiny_file):
    impostor = tmp_path / "sam_vit_b_01ec64.pth"
    impostor.write_bytes(tiny_file.read_bytes())
    with pytest.raises(ValueError, match="expected ec2df6273261"):
        ml.load_sam(impostor)
