"""The SAM architecture of a checkpoint, inferred from its weights' shapes, and the safe reader
of checkpoint files. Nothing here builds a model (:mod:`.model_building`) or finds a file by
name (:mod:`.weights_store`).

One reader for every checkpoint, the official ones and the tiny random models of the tests:

- SAM ViT image encoders (``vit_b``/``vit_l``/``vit_h``, MedSAM, and narrower test models):
  width from ``patch_embed.proj.weight``, depth from the count of ``blocks.N``, head count
  from the head width of ``rel_pos_h``, window size and global-attention blocks from the
  lengths of the relative-position tables (``2 * window - 1`` for windowed blocks,
  ``2 * grid - 1`` for global ones), MLP ratio from ``mlp.lin1``, neck width from ``neck.0``.
  Official layouts are named by width and depth: 768/12 ``vit_b``, 1024/24 ``vit_l``,
  1280/32 ``vit_h``; anything else is ``custom``.
- Prompt encoder and mask decoder widths, transformer depth, MLP width, attention
  down-sampling, IoU head depth and width and the number of mask outputs come from shapes
  too. The decoder's attention head count is the one thing no weight shape records: it is 8
  for the official 256-wide decoder (all known checkpoints) and one head per 16 channels,
  at most 8, for narrower ones (the tiny test models); ``decoder_num_heads`` overrides it.
- MobileSAM (``vit_t``): a TinyViT image encoder, recognised by ``image_encoder.layers.*``
  and ``patch_embed.seq.*`` keys; stage widths, depths, head counts (``attention_biases``),
  window sizes, MLP and MBConv expansion ratios and the local convolution size are inferred
  the same way.

Reading: ``torch.load(path, map_location="cpu", weights_only=True)`` (memory-mapped where
the file format allows), so a checkpoint can never run code while it is read; a pickled whole
model is refused with a clear error instead of being unpickled. State dicts nested under
``"model"`` or ``"state_dict"`` and ``module.``-prefixed keys (DataParallel) are accepted.
Every problem is a one-line ValueError naming the file and what was found.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..torch_files import first_sentence
from .checkpoints import MODEL_TYPES
from .efficientvit import EfficientViTEncoderSpec, is_efficientvit_state, official_spec, official_type
from .efficientvit import infer_encoder as _infer_efficientvit

CUSTOM = "custom"
"""Model type of a SAM whose layout is none of the official ones (e.g. the tiny test models)."""

_OFFICIAL_VIT = {
    # model_type: (embed_dim, depth, num_heads, global_attn_indexes), as segment_anything builds them
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}
_OFFICIAL_TINY_VIT = {
    "embed_dims": (64, 128, 160, 320),
    "depths": (2, 2, 6, 2),
    "num_heads": (2, 4, 5, 10),
    "window_sizes": (7, 7, 14, 7),
}
_TINY_VIT_FINAL_DIMS = (320, 448, 576)  # MobileSAM's TinyViT keeps stride 1 into these widths only


@dataclass(frozen=True)
class ViTEncoderSpec:
    """SAM's ViT image encoder (segment_anything ``ImageEncoderViT``)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int
    patch_size: int = 16
    img_size: int = 1024
    mlp_ratio: float = 4.0
    out_chans: int = 256
    qkv_bias: bool = True
    in_chans: int = 3


@dataclass(frozen=True)
class TinyViTEncoderSpec:
    """MobileSAM's TinyViT image encoder (``mobile_sam.modeling.TinyViT``); its neck is 256 wide."""

    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_sizes: tuple[int, ...]
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    num_classes: int = 1000
    img_size: int = 1024
    in_chans: int = 3
    out_chans: int = 256
    patch_size: int = 16  # stride of the output grid: 1024 pixels -> 64 x 64 embeddings


@dataclass(frozen=True)
class DecoderSpec:
    """SAM's prompt encoder and mask decoder (two-way transformer)."""

    prompt_dim: int = 256
    mask_in_chans: int = 16
    depth: int = 2
    mlp_dim: int = 2048
    num_heads: int = 8
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256


@dataclass(frozen=True)
class SamArchitecture:
    """Everything needed to build a SAM whose state dict matches a checkpoint."""

    model_type: str  # vit_b | vit_l | vit_h | vit_t | efficientvit_l0 ... efficientvit_xl1 | custom
    encoder: ViTEncoderSpec | TinyViTEncoderSpec | EfficientViTEncoderSpec
    decoder: DecoderSpec = field(default_factory=DecoderSpec)

    @property
    def is_tiny_vit(self) -> bool:
        return isinstance(self.encoder, TinyViTEncoderSpec)

    @property
    def is_efficientvit(self) -> bool:
        return isinstance(self.encoder, EfficientViTEncoderSpec)

    @property
    def family(self) -> str:
        """Model family as far as the weights tell: ``mobile_sam`` for TinyViT,
        ``efficientvit_sam`` for EfficientViT, else ``sam`` (MedSAM has SAM's layout; only its
        digest tells them apart)."""
        if self.is_efficientvit:
            return "efficientvit_sam"
        return "mobile_sam" if self.is_tiny_vit else "sam"

    @property
    def image_embedding_size(self) -> int:
        """Side of the square embedding grid: 64 for a 1024-pixel input."""
        return self.encoder.img_size // self.encoder.patch_size

    def describe(self) -> str:
        """A short human-readable summary, e.g. ``ViT width 768, depth 12, 12 heads``."""
        e = self.encoder
        if isinstance(e, TinyViTEncoderSpec):
            text = f"TinyViT widths {list(e.embed_dims)}, depths {list(e.depths)}"
        elif isinstance(e, EfficientViTEncoderSpec):
            text = e.describe()
        else:
            text = f"ViT width {e.embed_dim}, depth {e.depth}, {e.num_heads} heads"
        return f"{text}, prompt width {self.decoder.prompt_dim}"


# --------------------------------------------------------------------------------------------
# Reading a checkpoint file


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, on the CPU, read without running pickled code.

    Accepts a plain state dict, one nested under ``"model"`` or ``"state_dict"``, and
    ``module.``-prefixed keys. Raises ValueError (one line) for a missing, empty, truncated
    or corrupt file, a pickled whole model, or a file that holds no tensor dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"Checkpoint file {path} is empty")
    obj = _torch_load(path)
    return _state_dict_from(obj, path)


def _torch_load(path: Path) -> Any:
    mmap = zipfile.is_zipfile(path)  # only the zip format (torch >= 1.6 default) can be mapped
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        if "weights only load failed" in str(error).lower() or "weights_only" in str(error):
            raise InputError(
                f"Checkpoint {path} holds pickled Python objects (e.g. a whole saved model), not a plain "
                "state dict; refusing to unpickle code from a weights file (re-save it with "
                "torch.save(model.state_dict(), path))"
            ) from None
        raise InputError(f"Checkpoint {path} is not a readable torch checkpoint ({first_sentence(error)})") from None
    except KeyError:  # torch's legacy reader on bytes that are no pickle protocol it knows
        raise InputError(f"Checkpoint {path} is not a torch checkpoint file (unrecognised content)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise InputError(
            f"Checkpoint {path} cannot be read as a torch checkpoint (truncated or corrupt?): {first_sentence(error)}"
        ) from None


def _state_dict_from(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(2):  # {"model": {...}} or {"state_dict": {...}}, at most twice nested
        if isinstance(obj, Mapping):
            for key in ("model", "state_dict"):
                inner = obj.get(key)
                if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                    obj = inner
                    break
    if not isinstance(obj, Mapping):
        raise InputError(f"Checkpoint {path} holds a {type(obj).__name__}, not a state dict of tensors")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InputError(f"Checkpoint {path} holds no tensors (keys found: {_sample(list(map(str, obj.keys())))})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def _sample(keys: list[str], count: int = 4) -> str:
    shown = ", ".join(keys[:count])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > count else shown or "none"


# --------------------------------------------------------------------------------------------
# Inferring the architecture


def infer_architecture(
    state_dict: Mapping[str, torch.Tensor],
    *,
    model_type: str | None = None,
    decoder_num_heads: int | None = None,
    source: str = "the checkpoint",
) -> SamArchitecture:
    """The SAM architecture whose ``state_dict()`` has these keys and shapes.

    ``model_type`` (vit_b/vit_l/vit_h/vit_t) asks for that official layout: ValueError if
    the weights contradict it; the official configuration is then built. ``source`` names the
    file in error messages.
    """
    if model_type is not None and model_type not in MODEL_TYPES:
        raise InputError(f"Unknown architecture {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")
    keys = list(state_dict)
    encoder_keys = [k for k in keys if k.startswith("image_encoder.")]
    if not encoder_keys:
        raise InputError(
            f"{_cap(source)} is not a SAM checkpoint: it has no image_encoder.* weights "
            f"(found {_sample(keys)}); is it a checkpoint of another model family?"
        )
    missing_parts = [p for p in ("prompt_encoder.", "mask_decoder.") if not any(k.startswith(p) for k in keys)]
    if missing_parts:
        raise InputError(
            f"{_cap(source)} has image_encoder weights but no {' or '.join(p + '*' for p in missing_parts)} "
            "weights: an encoder-only or partial checkpoint, not a whole SAM"
        )
    sd = {k[len("image_encoder.") :]: v for k, v in state_dict.items() if k.startswith("image_encoder.")}
    encoder: ViTEncoderSpec | TinyViTEncoderSpec | EfficientViTEncoderSpec
    if "patch_embed.proj.weight" in sd:
        encoder = _infer_vit(sd, source)
        inferred_type = _official_vit_type(encoder)
    elif "patch_embed.seq.0.c.weight" in sd and any(k.startswith("layers.") for k in sd):
        encoder = _infer_tiny_vit(sd, source)
        inferred_type = "vit_t" if _is_official_tiny_vit(encoder) else CUSTOM
    elif is_efficientvit_state(sd):
        encoder = _infer_efficientvit(sd, _cap(source))
        inferred_type = official_type(encoder) or CUSTOM
    else:
        raise InputError(
            f"{_cap(source)} has an image encoder of an unknown layout (found image_encoder "
            f"{_sample(sorted(sd))}); expected SAM's ViT (patch_embed.proj), MobileSAM's TinyViT (layers.*) "
            "or EfficientViT-SAM (backbone.stages.*)"
        )
    decoder = _infer_decoder(state_dict, encoder, decoder_num_heads, source)
    if model_type is not None and model_type != inferred_type:
        found = (
            f"{inferred_type} ({_describe_encoder(encoder)})" if inferred_type != CUSTOM else _describe_encoder(encoder)
        )
        raise InputError(f"--model-type {model_type} contradicts the weights of {source}: they are {found}")
    return SamArchitecture(model_type=inferred_type, encoder=encoder, decoder=decoder)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _describe_encoder(encoder: ViTEncoderSpec | TinyViTEncoderSpec | EfficientViTEncoderSpec) -> str:
    if isinstance(encoder, TinyViTEncoderSpec):
        return f"a TinyViT image encoder with stage widths {list(encoder.embed_dims)}"
    if isinstance(encoder, EfficientViTEncoderSpec):
        return f"an {encoder.describe()} image encoder"
    return f"a ViT image encoder of width {encoder.embed_dim} and depth {encoder.depth}"


def _block_indices(sd: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in sd if (m := pattern.match(k))}
    indices = sorted(found)
    if indices != list(range(len(indices))):
        raise InputError(f"Non-contiguous {prefix}N weights: found indices {indices}")
    return indices


def _require(sd: Mapping[str, torch.Tensor], key: str, source: str, prefix: str = "image_encoder.") -> torch.Tensor:
    try:
        return sd[key]
    except KeyError:
        raise InputError(f"{_cap(source)} lacks {prefix}{key}: not a complete SAM checkpoint") from None


def _infer_vit(sd: Mapping[str, torch.Tensor], source: str) -> ViTEncoderSpec:
    proj = sd["patch_embed.proj.weight"]  # (embed_dim, in_chans, patch, patch)
    if proj.ndim != 4:
        raise InputError(
            f"{_cap(source)}: image_encoder.patch_embed.proj.weight has shape {tuple(proj.shape)}, expected 4-D"
        )
    embed_dim, in_chans, patch_size = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[2])
    pos = sd.get("pos_embed")  # (1, grid, grid, embed_dim)
    if pos is None or pos.ndim != 4:
        raise InputError(f"{_cap(source)} has no 4-D image_encoder.pos_embed: SAM's ViT always has one")
    grid = int(pos.shape[1])
    depth = len(_block_indices(sd, "blocks."))
    if depth == 0:
        raise InputError(f"{_cap(source)} has no image_encoder.blocks.N weights")
    head_dims, window_size, global_indexes = set(), None, []
    for i in range(depth):
        rel = sd.get(f"blocks.{i}.attn.rel_pos_h")
        if rel is None:
            raise InputError(
                f"{_cap(source)} has no relative-position tables (image_encoder.blocks.{i}.attn.rel_pos_h): "
                "not SAM's ViT layout, head count cannot be inferred"
            )
        head_dims.add(int(rel.shape[1]))
        size = (int(rel.shape[0]) + 1) // 2
        if size == grid:
            global_indexes.append(i)
        elif window_size is None:
            window_size = size
        elif size != window_size:
            raise InputError(
                f"{_cap(source)}: windowed blocks have different window sizes ({window_size} and {size}); "
                "SAM's ViT uses one"
            )
    if len(head_dims) != 1 or embed_dim % next(iter(head_dims)):
        raise InputError(
            f"{_cap(source)}: inconsistent attention head widths {sorted(head_dims)} for width {embed_dim}"
        )
    num_heads = embed_dim // head_dims.pop()
    lin1 = _require(sd, "blocks.0.mlp.lin1.weight", source)
    neck = _require(sd, "neck.0.weight", source)
    return ViTEncoderSpec(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        global_attn_indexes=tuple(global_indexes),
        window_size=window_size if window_size is not None else 14,
        patch_size=patch_size,
        img_size=grid * patch_size,
        mlp_ratio=int(lin1.shape[0]) / embed_dim,
        out_chans=int(neck.shape[0]),
        qkv_bias="blocks.0.attn.qkv.bias" in sd,
        in_chans=in_chans,
    )


def _official_vit_type(encoder: ViTEncoderSpec) -> str:
    for name, (embed_dim, depth, heads, globals_) in _OFFICIAL_VIT.items():
        if (encoder.embed_dim, encoder.depth) == (embed_dim, depth):
            official = (heads, globals_, 14, 16, 1024, 4.0, 256)
            found = (
                encoder.num_heads,
                encoder.global_attn_indexes,
                encoder.window_size,
                encoder.patch_size,
                encoder.img_size,
                encoder.mlp_ratio,
                encoder.out_chans,
            )
            return name if found == official else CUSTOM
    return CUSTOM


def _infer_tiny_vit(sd: Mapping[str, torch.Tensor], source: str) -> TinyViTEncoderSpec:
    layers = _block_indices(sd, "layers.")
    if len(layers) != 4:
        raise InputError(
            f"{_cap(source)}: MobileSAM's TinyViT has 4 stages (image_encoder.layers.0-3), found {len(layers)}"
        )
    stem = _require(sd, "patch_embed.seq.2.c.weight", source)
    dims = [int(stem.shape[0])]
    for i in range(3):
        dims.append(int(_require(sd, f"layers.{i}.downsample.conv1.c.weight", source).shape[0]))
    depths = [len(_block_indices(sd, f"layers.{i}.blocks.")) for i in range(4)]
    if dims[-1] not in _TINY_VIT_FINAL_DIMS:
        raise InputError(
            f"{_cap(source)}: the last TinyViT stage is {dims[-1]} wide; MobileSAM's TinyViT yields SAM's "
            f"64x64 grid only for widths {', '.join(map(str, _TINY_VIT_FINAL_DIMS))}"
        )
    heads, windows, mlp_ratios = [1], [7], set()
    for i in range(1, 4):
        if depths[i] == 0:
            heads.append(1)
            windows.append(7)
            continue
        biases = _require(sd, f"layers.{i}.blocks.0.attn.attention_biases", source)  # (heads, window**2)
        window = math.isqrt(int(biases.shape[1]))
        if window * window != int(biases.shape[1]):
            raise InputError(
                f"{_cap(source)}: attention_biases of stage {i} has {biases.shape[1]} offsets, not a square window"
            )
        heads.append(int(biases.shape[0]))
        windows.append(window)
        fc1 = _require(sd, f"layers.{i}.blocks.0.mlp.fc1.weight", source)
        mlp_ratios.add(int(fc1.shape[0]) / dims[i])
    if len(mlp_ratios) > 1:
        raise InputError(
            f"{_cap(source)}: TinyViT stages have different MLP ratios {sorted(mlp_ratios)}; MobileSAM uses one"
        )
    expand = 4.0
    if depths[0] > 0:
        expand = int(_require(sd, "layers.0.blocks.0.conv1.c.weight", source).shape[0]) / dims[0]
    local_conv = 3
    first_attn_stage = next((i for i in range(1, 4) if depths[i] > 0), None)
    if first_attn_stage is not None:
        local_conv = int(_require(sd, f"layers.{first_attn_stage}.blocks.0.local_conv.c.weight", source).shape[-1])
    head = sd.get("head.weight")
    neck = _require(sd, "neck.0.weight", source)
    if int(neck.shape[0]) != 256:
        raise InputError(f"{_cap(source)}: MobileSAM's TinyViT neck is 256 wide, found {int(neck.shape[0])}")
    return TinyViTEncoderSpec(
        embed_dims=tuple(dims),
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_sizes=tuple(windows),
        mlp_ratio=mlp_ratios.pop() if mlp_ratios else 4.0,
        mbconv_expand_ratio=expand,
        local_conv_size=local_conv,
        num_classes=int(head.shape[0]) if head is not None else 0,
        in_chans=int(_require(sd, "patch_embed.seq.0.c.weight", source).shape[1]),
    )


def _official_tiny_vit_spec() -> TinyViTEncoderSpec:
    """MobileSAM's TinyViT encoder as ``mobile_sam``'s ``vit_t`` builder makes it."""
    return TinyViTEncoderSpec(
        embed_dims=_OFFICIAL_TINY_VIT["embed_dims"],
        depths=_OFFICIAL_TINY_VIT["depths"],
        num_heads=_OFFICIAL_TINY_VIT["num_heads"],
        window_sizes=_OFFICIAL_TINY_VIT["window_sizes"],
    )


def _is_official_tiny_vit(encoder: TinyViTEncoderSpec) -> bool:
    return (
        all(tuple(getattr(encoder, k)) == tuple(v) for k, v in _OFFICIAL_TINY_VIT.items() if k != "num_heads")
        and encoder.num_heads[1:] == _OFFICIAL_TINY_VIT["num_heads"][1:]
        and encoder.mlp_ratio == 4.0
        and encoder.mbconv_expand_ratio == 4.0
        and encoder.local_conv_size == 3
    )


def _infer_decoder(
    state_dict: Mapping[str, torch.Tensor],
    encoder: ViTEncoderSpec | TinyViTEncoderSpec | EfficientViTEncoderSpec,
    decoder_num_heads: int | None,
    source: str,
) -> DecoderSpec:
    def get(key: str) -> torch.Tensor:
        return _require(state_dict, key, source, prefix="")

    gaussian = get("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix")  # (2, prompt_dim // 2)
    prompt_dim = int(gaussian.shape[1]) * 2
    if encoder.out_chans != prompt_dim:
        raise InputError(
            f"{_cap(source)}: the image encoder yields {encoder.out_chans} channels but the prompt encoder is "
            f"{prompt_dim} wide"
        )
    mask_in_chans = int(get("prompt_encoder.mask_downscaling.3.weight").shape[0])
    depth = len(_block_indices(state_dict, "mask_decoder.transformer.layers."))
    if depth == 0:
        raise InputError(f"{_cap(source)} has no mask_decoder.transformer.layers.N weights")
    mlp_dim = int(get("mask_decoder.transformer.layers.0.mlp.lin1.weight").shape[0])
    cross = int(get("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight").shape[0])
    if cross == 0 or prompt_dim % cross:
        raise InputError(f"{_cap(source)}: cross-attention width {cross} does not divide the prompt width {prompt_dim}")
    downsample = prompt_dim // cross
    iou_layers = _block_indices(state_dict, "mask_decoder.iou_prediction_head.layers.")
    if not iou_layers:
        raise InputError(f"{_cap(source)} has no mask_decoder.iou_prediction_head weights")
    iou_hidden = int(get("mask_decoder.iou_prediction_head.layers.0.weight").shape[0])
    num_mask_tokens = int(get("mask_decoder.mask_tokens.weight").shape[0])
    heads = decoder_num_heads if decoder_num_heads is not None else _default_decoder_heads(prompt_dim, downsample)
    if heads < 1 or prompt_dim % heads or cross % heads:
        raise InputError(f"Decoder head count {heads} must divide the decoder widths {prompt_dim} and {cross}")
    return DecoderSpec(
        prompt_dim=prompt_dim,
        mask_in_chans=mask_in_chans,
        depth=depth,
        mlp_dim=mlp_dim,
        num_heads=heads,
        attention_downsample_rate=downsample,
        num_multimask_outputs=num_mask_tokens - 1,
        iou_head_depth=len(iou_layers),
        iou_head_hidden_dim=iou_hidden,
    )


def _default_decoder_heads(prompt_dim: int, downsample: int) -> int:
    """8 heads for SAM's 256-wide decoder; one per 16 channels (at most 8) for narrower ones."""
    heads = max(1, min(8, prompt_dim // 16))
    while heads > 1 and (prompt_dim % heads or (prompt_dim // downsample) % heads):
        heads -= 1
    return heads


def official_architecture(model_type: str) -> SamArchitecture:
    """The architecture segment_anything's / MobileSAM's builders make for ``model_type``."""
    if model_type in _OFFICIAL_VIT:
        embed_dim, depth, heads, globals_ = _OFFICIAL_VIT[model_type]
        encoder = ViTEncoderSpec(
            embed_dim=embed_dim, depth=depth, num_heads=heads, global_attn_indexes=globals_, window_size=14
        )
        return SamArchitecture(model_type=model_type, encoder=encoder)
    if model_type == "vit_t":
        return SamArchitecture(model_type="vit_t", encoder=_official_tiny_vit_spec())
    if model_type.startswith("efficientvit_") and model_type in MODEL_TYPES:
        return SamArchitecture(model_type=model_type, encoder=official_spec(model_type))
    raise InputError(f"Unknown architecture {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")


def inspect_checkpoint(path: str | os.PathLike, *, model_type: str | None = None) -> SamArchitecture:
    """Read a checkpoint file and infer its architecture without building the model."""
    state = read_state_dict(path)
    return infer_architecture(state, model_type=model_type, source=str(path))
