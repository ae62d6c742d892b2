"""EfficientViT-SAM (MIT Han lab, arXiv 2402.05008): SAM's prompt encoder and mask decoder
behind an EfficientViT image encoder, from the ``efficientsam`` package (PyPI, Apache-2.0; the
``efficientvit`` repository's SAM code; needs Python >= 3.10). Not to be confused with Meta's
EfficientSAM (yformer), a plain ViT-Ti/S encoder at 1024 pixels.

What differs from SAM, all in the image encoder:

- The "L" models (``efficientvit_l0/l1/l2``) encode the slice resized to 512 pixels on its long
  side (PIL bilinear with antialiasing, as SAM's ResizeLongestSide), normalised with SAM's pixel
  mean/std and zero-padded to 512 x 512; the "XL" models (``efficientvit_xl0/xl1``) take SAM's
  1024 x 1024. The neck resizes (bicubic) to SAM's 64 x 64 x 256 embedding either way.
- Prompts, low-resolution logits and mask upscaling stay in SAM's 1024-pixel frame
  (``EfficientViTSamPredictor``: ``input_size`` from ResizeLongestSide(1024),
  ``postprocess_masks`` through 1024 x 1024), so the decoder path is SAM's unchanged.

Here the image encoder is the package's own ``EfficientViTSamImageEncoder``, given two
attributes: ``img_size`` = 1024 (SAM's frame, what the rest of the code reads) and
``encoder_input_size`` (512 or 1024, :func:`encoder_input_side`). Its state-dict keys are the
checkpoint's ``image_encoder.*`` keys unchanged. Norm epsilons are set to 1e-6 as the package's
model zoo does (``set_norm_eps``).

The architecture is read from the weights: backbone stage widths and depths, the neck's width,
depth and expansion; five backbone stages make an L model, six an XL model (their block types
are fixed per family in the package's builders). Official layouts are named by their widths and
depths; anything else is ``custom`` (the tiny test models).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..torch_files import first_sentence

PACKAGE = "efficientsam"
#: Backbone block types, expansion ratios and reduced-norm flags per family, as the package's
#: ``efficientvit_sam_l*`` (EfficientViTLargeBackbone defaults) and ``efficientvit_sam_xl*`` builders set them.
_FAMILY_BLOCKS: dict[str, dict[str, list[Any]]] = {
    "l": {
        "block_list": ["res", "fmb", "fmb", "mb", "att"],
        "expand_list": [1, 4, 4, 4, 6],
        "fewer_norm_list": [False, False, False, True, True],
    },
    "xl": {
        "block_list": ["res", "fmb", "fmb", "fmb", "att@3", "att@3"],
        "expand_list": [1, 4, 4, 4, 4, 6],
        "fewer_norm_list": [False, False, False, False, True, True],
    },
}
#: Encoder input side per family (the package's builders' ``image_size`` defaults).
_FAMILY_INPUT = {"l": 512, "xl": 1024}
#: Official layouts: model type -> (family, backbone widths, backbone depths, neck depth).
OFFICIAL: dict[str, tuple[str, tuple[int, ...], tuple[int, ...], int]] = {
    "efficientvit_l0": ("l", (32, 64, 128, 256, 512), (1, 1, 1, 4, 4), 4),
    "efficientvit_l1": ("l", (32, 64, 128, 256, 512), (1, 1, 1, 6, 6), 8),
    "efficientvit_l2": ("l", (32, 64, 128, 256, 512), (1, 2, 2, 8, 8), 12),
    "efficientvit_xl0": ("xl", (32, 64, 128, 256, 512, 1024), (0, 1, 1, 2, 3, 3), 6),
    "efficientvit_xl1": ("xl", (32, 64, 128, 256, 512, 1024), (1, 2, 2, 4, 6, 6), 12),
}
_NECK_EXPAND = {"l": 1.0, "xl": 4.0}
_QKV_DIM = 32  # the package's default; no weight shape records it


@dataclass(frozen=True)
class EfficientViTEncoderSpec:
    """EfficientViT-SAM's image encoder: an EfficientViT "large" backbone and the SAM neck.

    Attributes:
        variant: ``l`` (five backbone stages, 512-pixel input) or ``xl`` (six, 1024).
        width_list / depth_list: backbone stage widths and block counts.
        head_width / head_depth / head_expand: the neck's width, block count and expansion.
        input_size: side of the square encoder input (512 or 1024).
        out_chans: embedding channels (the neck's output, 256).
    """

    variant: str
    width_list: tuple[int, ...]
    depth_list: tuple[int, ...]
    head_width: int = 256
    head_depth: int = 4
    head_expand: float = 1.0
    input_size: int = 512
    out_chans: int = 256
    img_size: int = 1024  # SAM's prompt frame
    patch_size: int = 16  # 1024 / 64: the embedding grid is SAM's 64 x 64

    def backbone_kwargs(self) -> dict[str, Any]:
        blocks = _FAMILY_BLOCKS[self.variant]
        return {"width_list": list(self.width_list), "depth_list": list(self.depth_list), **blocks}

    def neck_stages(self) -> list[str]:
        """The backbone stages the neck fuses: the last three, deepest first."""
        last = len(self.width_list) - 1
        return [f"stage{last - i}" for i in range(3)]

    def describe(self) -> str:
        return f"EfficientViT-SAM-{self.variant.upper()} widths {list(self.width_list)}, depths {list(self.depth_list)}"


def is_efficientvit_state(encoder_state: Mapping[str, Any]) -> bool:
    """Whether ``image_encoder.*`` weights (prefix removed) are EfficientViT-SAM's."""
    return "backbone.stages.0.op_list.0.conv.weight" in encoder_state and any(
        k.startswith("neck.middle.op_list.") for k in encoder_state
    )


def _indices(sd: Mapping[str, Any], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = sorted({int(m.group(1)) for k in sd if (m := pattern.match(k))})
    if found != list(range(len(found))):
        raise InputError(f"Non-contiguous image_encoder.{prefix}N weights: found indices {found}")
    return found


def infer_encoder(sd: Mapping[str, torch.Tensor], source: str) -> EfficientViTEncoderSpec:
    """The encoder spec whose ``state_dict()`` has these ``image_encoder.*`` keys (prefix removed)."""

    def get(key: str) -> torch.Tensor:
        try:
            return sd[key]
        except KeyError:
            raise InputError(
                f"{source} lacks image_encoder.{key}: not a complete EfficientViT-SAM checkpoint"
            ) from None

    stages = _indices(sd, "backbone.stages.")
    variant = {5: "l", 6: "xl"}.get(len(stages))
    if variant is None:
        raise InputError(
            f"{source}: an EfficientViT-SAM backbone has 5 (L) or 6 (XL) stages, found {len(stages)}"
        )
    widths = [int(get("backbone.stages.0.op_list.0.conv.weight").shape[0])]
    for i in stages[1:]:
        widths.append(int(get(f"backbone.stages.{i}.op_list.0.main.point_conv.conv.weight").shape[0]))
    depths = [len(_indices(sd, f"backbone.stages.{i}.op_list.")) - 1 for i in stages]
    head_width = int(get("neck.input_ops.0.op_list.0.conv.weight").shape[0])
    inputs = [int(get(f"neck.input_ops.{i}.op_list.0.conv.weight").shape[1]) for i in range(3)]
    if inputs != widths[::-1][:3]:
        raise InputError(
            f"{source}: the neck reads {inputs} channels, the backbone's last stages are {widths[::-1][:3]} wide"
        )
    head_depth = len(_indices(sd, "neck.middle.op_list."))
    expand = 1.0
    if head_depth:
        expand = int(get("neck.middle.op_list.0.main.spatial_conv.conv.weight").shape[0]) / head_width
    out = int(get("neck.output_ops.0.op_list.0.conv.weight").shape[0])
    return EfficientViTEncoderSpec(
        variant=variant,
        width_list=tuple(widths),
        depth_list=tuple(depths),
        head_width=head_width,
        head_depth=head_depth,
        head_expand=expand,
        input_size=_FAMILY_INPUT[variant],
        out_chans=out,
    )


def official_type(spec: EfficientViTEncoderSpec) -> str | None:
    """``efficientvit_l0`` ... ``efficientvit_xl1`` for an official layout, else None."""
    for name, (variant, widths, depths, head_depth) in OFFICIAL.items():
        if (spec.variant, spec.width_list, spec.depth_list, spec.head_depth) == (variant, widths, depths, head_depth):
            if (spec.head_width, spec.head_expand, spec.out_chans) == (256, _NECK_EXPAND[variant], 256):
                return name
    return None


def official_spec(model_type: str) -> EfficientViTEncoderSpec:
    variant, widths, depths, head_depth = OFFICIAL[model_type]
    return EfficientViTEncoderSpec(
        variant=variant,
        width_list=widths,
        depth_list=depths,
        head_depth=head_depth,
        head_expand=_NECK_EXPAND[variant],
        input_size=_FAMILY_INPUT[variant],
    )


def efficientvit_available() -> bool:
    """Whether the ``efficientsam`` package (EfficientViT-SAM's code) can be imported."""
    try:
        _package()
    except InputError:
        return False
    return True


def _package() -> Any:
    try:
        from efficientsam.models.efficientvit import backbone, sam
        from efficientsam.models.nn import norm
    except (ImportError, TypeError) as error:  # TypeError: Python 3.9 (X | Y annotations)
        raise InputError(
            "This is an EfficientViT-SAM checkpoint; loading it needs the package efficientsam (Python >= 3.10, "
            f"pip install 'samfewshot[sam]'): {first_sentence(error)}"
        ) from None
    return backbone, sam, norm


def build_image_encoder(spec: EfficientViTEncoderSpec) -> nn.Module:
    """The package's ``EfficientViTSamImageEncoder`` for ``spec`` (norm eps 1e-6), with the
    attributes ``img_size`` (1024, SAM's frame) and ``encoder_input_size`` (512 or 1024)."""
    backbone_module, sam_module, norm_module = _package()
    backbone = backbone_module.EfficientViTLargeBackbone(**spec.backbone_kwargs(), qkv_dim=_QKV_DIM)
    neck = sam_module.SamNeck(
        fid_list=spec.neck_stages(),
        in_channel_list=list(spec.width_list[::-1][:3]),
        head_width=spec.head_width,
        head_depth=spec.head_depth,
        expand_ratio=spec.head_expand,
        middle_op="fmb",
        out_dim=spec.out_chans,
    )
    encoder = sam_module.EfficientViTSamImageEncoder(backbone, neck)
    norm_module.set_norm_eps(encoder, 1e-6)
    encoder.img_size = spec.img_size
    encoder.encoder_input_size = spec.input_size
    return encoder


def encoder_input_side(image_encoder: nn.Module) -> int:
    """Side of the square input an image encoder takes: ``encoder_input_size`` where it has one
    (EfficientViT-SAM L: 512), else ``img_size`` (SAM, MobileSAM: 1024)."""
    side: Any = getattr(image_encoder, "encoder_input_size", None)
    if side is None:
        side = getattr(image_encoder, "img_size")  # noqa: B009 (nn.Module's __getattr__ types it as a Tensor)
    return int(side)
