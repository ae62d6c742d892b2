"""Build a SAM of a given :class:`~.architecture.SamArchitecture` from segment_anything's own
classes (MobileSAM's TinyViT for ``vit_t``, EfficientViT-SAM's encoder from the ``efficientsam``
package for ``efficientvit_*``: :mod:`.efficientvit`) and load a state dict into it strictly.

TinyViT: segment_anything has none, so it comes from the pinned package ``mobilesam-mirror``
(PyPI, Apache-2.0; it ships MobileSAM's own ``mobile_sam`` code unchanged, needs ``timm`` at
import). timm's own TinyViT (``timm.models.tiny_vit``) was compared and rejected: it cannot
load MobileSAM's image encoder weights. Its state-dict names differ throughout (``stages.N``
with the down-sampling at a stage's start vs ``layers.N`` with it at the end, ``conv``
vs ``c``, ``patch_embed.conv1`` vs ``patch_embed.seq.0``), it has a classification head
instead of MobileSAM's 256-channel neck (``neck.0-3``), and its last down-sampling keeps
stride 2, so a 1024-pixel slice gives 320x32x32 features instead of SAM's 256x64x64.
Using it would mean re-implementing MobileSAM's changes on top of timm and re-mapping every
key, with no reference weights here to prove the result equal. mobilesam-mirror runs the
code MobileSAM's weights were trained with. Its side effect: importing it registers
MobileSAM's ``tiny_vit_*`` builders in timm's model registry, replacing timm's own names
of that form in the process (warnings silenced); only vit_t loading imports it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import replace
from functools import partial

import torch
from torch import nn

from ..errors import InputError
from ..torch_files import first_sentence
from .architecture import SamArchitecture, TinyViTEncoderSpec, _cap, _sample, infer_architecture, official_architecture
from .efficientvit import EfficientViTEncoderSpec, build_image_encoder

_PIXEL_MEAN = (123.675, 116.28, 103.53)
_PIXEL_STD = (58.395, 57.12, 57.375)


def tiny_vit_available() -> bool:
    """Whether MobileSAM's TinyViT (packages mobilesam-mirror + timm) can be imported."""
    try:
        _tiny_vit_class()
    except ValueError:
        return False
    return True


def _tiny_vit_class() -> type:
    try:
        with warnings.catch_warnings():
            # mobile_sam imports timm's deprecated module paths and re-registers tiny_vit_* names
            warnings.simplefilter("ignore")
            from mobile_sam.modeling.tiny_vit_sam import TinyViT
    except ImportError as error:
        raise InputError(
            "This is a MobileSAM (vit_t, TinyViT) checkpoint; loading it needs the packages mobilesam-mirror "
            f"and timm (pip install 'samfewshot[sam]'): {first_sentence(error)}"
        ) from None
    return TinyViT


def build_sam(architecture: SamArchitecture, *, init_weights: bool = True) -> nn.Module:
    """A segment_anything ``Sam`` of this architecture (train mode), randomly initialised.

    ``init_weights=False`` skips the random initialisation of a ViT image encoder (seconds
    for vit_h): its memory is allocated uninitialised, for a caller that loads every weight
    next (all of that encoder's state is in its state dict).
    """
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    e, d = architecture.encoder, architecture.decoder
    image_encoder: nn.Module
    if isinstance(e, EfficientViTEncoderSpec):
        image_encoder = build_image_encoder(e)
    elif isinstance(e, TinyViTEncoderSpec):
        tiny_vit = _tiny_vit_class()
        image_encoder = tiny_vit(
            img_size=e.img_size,
            in_chans=e.in_chans,
            num_classes=e.num_classes,
            embed_dims=list(e.embed_dims),
            depths=list(e.depths),
            num_heads=list(e.num_heads),
            window_sizes=list(e.window_sizes),
            mlp_ratio=e.mlp_ratio,
            drop_rate=0.0,
            drop_path_rate=0.0,
            use_checkpoint=False,
            mbconv_expand_ratio=e.mbconv_expand_ratio,
            local_conv_size=e.local_conv_size,
            layer_lr_decay=0.8,
        )
    else:
        vit = partial(
            ImageEncoderViT,
            depth=e.depth,
            embed_dim=e.embed_dim,
            img_size=e.img_size,
            mlp_ratio=e.mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=e.num_heads,
            patch_size=e.patch_size,
            qkv_bias=e.qkv_bias,
            use_rel_pos=True,
            global_attn_indexes=e.global_attn_indexes,
            window_size=e.window_size,
            out_chans=e.out_chans,
            in_chans=e.in_chans,
        )
        if init_weights:
            image_encoder = vit()
        else:
            with torch.device("meta"):
                image_encoder = vit()
            persistent = image_encoder.state_dict().keys()
            if all(name in persistent for name, _ in image_encoder.named_buffers()):
                image_encoder = image_encoder.to_empty(device="cpu")
            else:  # a buffer the state dict would not restore: initialise normally
                image_encoder = vit()
        from .vit_attention import install_row_chunked_attention

        install_row_chunked_attention(image_encoder)  # same numbers; ViT-B 9.9 -> 5.6 s per slice (no gradients)
    grid = architecture.image_embedding_size
    return Sam(
        image_encoder=image_encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=d.prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(e.img_size, e.img_size),
            mask_in_chans=d.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=d.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=d.depth,
                embedding_dim=d.prompt_dim,
                mlp_dim=d.mlp_dim,
                num_heads=d.num_heads,
                attention_downsample_rate=d.attention_downsample_rate,
            ),
            transformer_dim=d.prompt_dim,
            iou_head_depth=d.iou_head_depth,
            iou_head_hidden_dim=d.iou_head_hidden_dim,
        ),
        pixel_mean=list(_PIXEL_MEAN),
        pixel_std=list(_PIXEL_STD),
    )


def load_weights(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], architecture: SamArchitecture, source: str
) -> None:
    """``model.load_state_dict(state_dict, strict=True)``, a one-line ValueError on mismatch.

    TinyViT's ``attention_bias_idxs`` index tables are derived, non-persistent buffers: copies
    of them in a checkpoint are ignored.
    """
    if architecture.is_tiny_vit:
        state_dict = {k: v for k, v in state_dict.items() if not k.endswith(".attention_bias_idxs")}
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError:
        expected = model.state_dict()
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        mismatched = [
            f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
            for k, v in expected.items()
            if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
        ]
        parts = []
        if missing:
            parts.append(f"missing {_sample(missing, 3)}")
        if unexpected:
            parts.append(f"unexpected {_sample(unexpected, 3)}")
        if mismatched:
            parts.append(f"shape mismatch {_sample(mismatched, 2)}")
        raise InputError(
            f"{_cap(source)} does not fit the {architecture.model_type} SAM ({architecture.describe()}): "
            + "; ".join(parts or ["load_state_dict failed"])
        ) from None


def build_from_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    model_type: str | None = None,
    decoder_num_heads: int | None = None,
    source: str = "the checkpoint",
) -> tuple[nn.Module, SamArchitecture]:
    """Infer, build and strictly load; the model is returned in eval mode on the CPU."""
    architecture = infer_architecture(
        state_dict, model_type=model_type, decoder_num_heads=decoder_num_heads, source=source
    )
    if model_type is not None:
        # The official layout was asked for (and the weights agree with it): build exactly that.
        architecture = official_architecture(model_type)
        if decoder_num_heads is not None:
            architecture = replace(architecture, decoder=replace(architecture.decoder, num_heads=decoder_num_heads))
    model = build_sam(architecture, init_weights=False)
    load_weights(model, state_dict, architecture, source)
    # eval() after loading: MobileSAM's attention caches its bias table on eval()
    return model.eval(), architecture
