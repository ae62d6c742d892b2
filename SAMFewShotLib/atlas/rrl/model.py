"""RRL-MedSAM: joint registration-segmentation with a SAM-distilled lightweight encoder.

After Wang et al., "SAM-Guided Robust Representation Learning for One-Shot 3D Medical Image
Segmentation" (RRL-MedSAM, arXiv 2504.20501):

- general encoder (f_lie): the lightweight encoder distilled from SAM's image encoder (stage 1,
  :mod:`.distillation`); it feeds the general segmentation decoder, whose output is the coarse
  mask;
- medical encoder: same architecture, shared by the registration decoder (atlas -> target
  displacement) and the auto-prompting segmentation decoder (:mod:`.prompt_decoder`), which
  takes the general branch's coarse mask as its prompt;
- both segmentation decoders are supervised by the atlas labels warped by the registration
  (pseudo labels), and the two encoders exchange weights by mutual EMA (:mod:`.ema`).

Geometry and deviations from the paper (CPU budget: a 128^3 pair forward in <= 2 s):

- inputs are (B, 1, S, S, S) intensities in [0, 1] (S = 128 by default, as in the paper); the
  network works on the *working grid* S/2 (2x average-pooled input): the 2D encoder runs on the
  S/2 axial slices (see :mod:`.volume_features` for how its per-slice features become a 3D
  pyramid) and every decoder ends on the working grid; logits and displacements are
  upsampled (trilinear) to S only at the end (:meth:`RRLMedSAM.upsample_logits`,
  :func:`.spatial_transformer.resize_flow`);
- the displacement is a plain dense field (no diffeomorphic integration);
- the paper's encoder and decoder layouts are not published in enough detail to copy; ours are
  described in their modules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .lightweight_encoder import LightweightEncoder
from .prompt_decoder import AutoPromptDecoder
from .pyramid_decoder import DEFAULT_WIDTHS
from .registration_decoder import RegistrationDecoder
from .segmentation_decoder import SegmentationDecoder
from .volume_features import COARSEST_STRIDE, PYRAMID_TOPS, pyramid_channels, volume_pyramid


@dataclass(frozen=True)
class RRLConfig:
    """Everything needed to rebuild the network (stored with its weights).

    Attributes:
        size: edge of the input cube in voxels (multiple of 32; the working grid is size / 2).
        n_classes: background + one class per atlas label.
        embed_dim: channels of the SAM-compatible embedding (256 for SAM, 32 for the tiny test SAM).
        encoder_widths, encoder_depths: :class:`LightweightEncoder` stages.
        decoder_widths: decoder widths, stride 16 to stride 1 of the working grid.
        pyramid_top: the coarsest level the 3D decoders see: ``"neck"`` (the distilled
            SAM-compatible embedding, the paper's design) or ``"stage"`` (stage 3's output: the
            layout of bundles written before this field existed, which :meth:`from_dict` assumes
            when it is absent); see :mod:`.volume_features`.
    """

    size: int = 128
    n_classes: int = 2
    embed_dim: int = 256
    encoder_widths: tuple[int, ...] = (24, 48, 96, 192)
    encoder_depths: tuple[int, ...] = (0, 2, 2, 4)
    decoder_widths: tuple[int, ...] = field(default=DEFAULT_WIDTHS)
    pyramid_top: str = "neck"

    def __post_init__(self) -> None:
        for name in ("encoder_widths", "encoder_depths", "decoder_widths"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not isinstance(self.size, int) or self.size < 2 * COARSEST_STRIDE or self.size % (2 * COARSEST_STRIDE):
            raise ValueError(
                f"size must be a multiple of {2 * COARSEST_STRIDE} (>= {2 * COARSEST_STRIDE}), not {self.size!r}"
            )
        if self.pyramid_top not in PYRAMID_TOPS:
            raise ValueError(f"pyramid_top must be one of {PYRAMID_TOPS}, not {self.pyramid_top!r}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2 (background + labels), not {self.n_classes}")

    @property
    def working_size(self) -> int:
        return self.size // 2

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> RRLConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known.setdefault("pyramid_top", "stage")  # networks written before the field: stage 3 on top
        return cls(**known)

    @property
    def pyramid_channels(self) -> tuple[int, ...]:
        """Channels of the 4 pyramid levels the decoders see (fine to coarse)."""
        return pyramid_channels(self.encoder_widths, self.embed_dim, self.pyramid_top)


@dataclass
class JRSOutput:
    """One forward pass, all on the working grid (S/2 per axis).

    Attributes:
        flow: (B, 3, D, H, W) displacement atlas -> target in working voxels (dz, dy, dx).
        moving, fixed: (B, 1, D, H, W) the atlas and target on the working grid.
        general_logits: (B', n_classes, D, H, W) general branch (coarse mask) logits.
        medical_logits: (B', n_classes, D, H, W) auto-prompted medical branch logits, the result.
        B' = B (targets) or 2B (targets, then atlases) with ``segment_moving``.
    """

    flow: torch.Tensor | None
    moving: torch.Tensor | None
    fixed: torch.Tensor
    general_logits: torch.Tensor
    medical_logits: torch.Tensor


class RRLMedSAM(nn.Module):
    """The whole network; see the module docstring."""

    def __init__(self, config: RRLConfig):
        super().__init__()
        self.config = config
        encoder = lambda: LightweightEncoder(config.embed_dim, config.encoder_widths, config.encoder_depths)  # noqa: E731
        self.general_encoder = encoder()
        self.medical_encoder = encoder()
        self.medical_encoder.load_state_dict(self.general_encoder.state_dict())
        channels = config.pyramid_channels
        self.registration = RegistrationDecoder(channels, config.decoder_widths)
        self.general_segmentation = SegmentationDecoder(channels, config.n_classes, config.decoder_widths)
        self.medical_segmentation = AutoPromptDecoder(channels, config.n_classes, config.decoder_widths)
        # channels-last 3D tensors make CPU conv3d backward 3-10x faster (measured: 4.3 s -> 0.3 s
        # for 9 -> 8 channels on a 2 x 64^3 batch); the decoders hold only 3D convolutions.
        for decoder in (self.registration, self.general_segmentation, self.medical_segmentation):
            decoder.to(memory_format=torch.channels_last_3d)

    def to_working(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S, S) input -> (B, 1, S/2, S/2, S/2) working grid (2x average pooling)."""
        size = self.config.size
        if volume.ndim != 5 or volume.shape[1] != 1 or tuple(volume.shape[2:]) != (size,) * 3:
            raise ValueError(f"Input must be (B, 1, {size}, {size}, {size}), not {tuple(volume.shape)}")
        return F.avg_pool3d(volume, 2).contiguous(memory_format=torch.channels_last_3d)

    def pyramid(self, encoder: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        """The 3D feature pyramid of working-grid ``images`` (B, 1, D, H, W) by ``encoder``."""
        return volume_pyramid(encoder, images, self.config.pyramid_top)  # type: ignore[arg-type]

    def general_logits(self, images: torch.Tensor) -> torch.Tensor:
        """General branch (coarse mask) logits of working-grid ``images`` (B, 1, D, H, W)."""
        return self.general_segmentation(self.pyramid(self.general_encoder, images), images)

    def segment_working(
        self, images: torch.Tensor, medical_pyramid=None, general: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """General and auto-prompted medical logits of working-grid ``images`` (B, 1, D, H, W);
        ``general`` (given: those logits are the prompt, e.g. detached) and ``medical_pyramid``
        (given: not recomputed) save work."""
        if general is None:
            general = self.general_logits(images)
        if medical_pyramid is None:
            medical_pyramid = self.pyramid(self.medical_encoder, images)
        medical = self.medical_segmentation(medical_pyramid, images, torch.softmax(general, dim=1))
        return general, medical

    def segment(self, target: torch.Tensor) -> JRSOutput:
        """Segmentation only (what applying a bundle needs): ``target`` (B, 1, S, S, S)."""
        fixed = self.to_working(target)
        general, medical = self.segment_working(fixed)
        return JRSOutput(None, None, fixed, general, medical)

    def forward(
        self, atlas: torch.Tensor, target: torch.Tensor, segment_moving: bool = False, prompt_grad: bool = True
    ) -> JRSOutput:
        """Joint registration-segmentation of ``atlas`` (moving) and ``target`` (fixed), both
        (B, 1, S, S, S) in [0, 1]. With ``segment_moving`` the atlases are segmented too
        (logits: targets first, then atlases). ``prompt_grad=False`` computes the general
        branch (the medical decoder's prompt) without gradients (the medical step of the
        alternating training)."""
        return self.forward_working(self.to_working(atlas), self.to_working(target), segment_moving, prompt_grad)

    def forward_working(
        self, moving: torch.Tensor, fixed: torch.Tensor, segment_moving: bool = False, prompt_grad: bool = True
    ) -> JRSOutput:
        """:meth:`forward` on working-grid ``moving`` and ``fixed`` (B, 1, S/2, S/2, S/2)."""
        b = fixed.shape[0]
        both = self.pyramid(self.medical_encoder, torch.cat([fixed, moving]))
        flow = self.registration([p[b:] for p in both], [p[:b] for p in both], moving, fixed)
        images = torch.cat([fixed, moving]) if segment_moving else fixed
        pyramid = both if segment_moving else [p[:b] for p in both]
        with torch.set_grad_enabled(prompt_grad and torch.is_grad_enabled()):
            general = self.general_logits(images)
        general, medical = self.segment_working(images, pyramid, general)
        return JRSOutput(flow, moving, fixed, general, medical)

    def upsample_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Working-grid logits (B, C, S/2, S/2, S/2) -> (B, C, S, S, S), trilinear."""
        return F.interpolate(logits, size=(self.config.size,) * 3, mode="trilinear", align_corners=False)
