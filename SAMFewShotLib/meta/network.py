"""SSM-SAM (Leng et al., WACV 2024): a frozen SAM ViT with adapters, the self-sampling prompt
encoder and the flexible mask attention decoder (FMAD).

Trainable: the encoder's adapters, the self-sampling prompt encoder and the FMAD (mask
attention blocks, fusion, hypernetwork). Frozen: SAM's ViT and its neck. SAM's prompt encoder
and mask decoder are not used: as in the paper, the decode path is adapted encoder ->
self-sampled prompt tokens + FMAD -> mask logits. Only the trainable tensors are saved in an
init file (:mod:`SAMFewShotLib.meta.init_file`).

The plain init (no meta-learning) is deterministic (``config.seed``): zero adapters (the encoder
starts as exactly SAM's encoder), PyTorch's default random init for the new modules.
"""

from __future__ import annotations

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import nn

from ..sam.preprocess import PreprocessedSlice, model_input
from .config import MetaConfig
from .mask_attention_decoder import FlexibleMaskAttentionDecoder
from .model import AdaptedViT, EncoderFeatures
from .self_sampling_prompt import SelfSamplingPromptEncoder
from .slices import SliceExample, frame_fraction, prompt_grid_points, support_mask_grid


class SSMSam(nn.Module):
    """The SSM-SAM network around a loaded SAM.

    Args:
        sam: a segment_anything ``Sam`` with a ViT image encoder; it is frozen in place
            (``requires_grad=False``) and must already be on the device to use.
        config: module sizes and the plain init's seed.
    """

    def __init__(self, sam: Sam, config: MetaConfig) -> None:
        super().__init__()
        sam.requires_grad_(False)
        self.config = config
        token_dim = int(sam.image_encoder.neck[0].out_channels)
        device = sam.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.encoder = AdaptedViT(sam.image_encoder, config.adapter_rank, config.checkpointing)
            self.prompt = SelfSamplingPromptEncoder(token_dim, config.global_queries, config.attention_heads(token_dim))
            self.decoder = FlexibleMaskAttentionDecoder(
                self.encoder.width, token_dim, config.decoder_dim, _divisor(config.mask_heads, config.decoder_dim),
                config.temperature, config.key_pool, prior_channel=config.prior_in_fusion,
                norm_eps=config.norm_eps,
            )
        self.to(device)
        self._sam = (sam,)  # a tuple: not registered twice as a submodule

    @property
    def sam(self) -> Sam:
        return self._sam[0]

    @property
    def image_size(self) -> int:
        return int(self.sam.image_encoder.img_size)

    # Trainable state ---------------------------------------------------------------------
    def trainable(self) -> dict[str, nn.Parameter]:
        """The trainable parameters by name, in a fixed order."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Detached CPU copies of the trainable parameters."""
        return {name: p.detach().to("cpu", copy=True) for name, p in self.trainable().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str = "the init") -> None:
        """Copy ``state`` into the trainable parameters; ValueError (one line) unless it holds
        exactly these tensors with these shapes."""
        params = self.trainable()
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        wrong = [k for k, p in params.items() if k in state and tuple(state[k].shape) != tuple(p.shape)]
        if missing or unexpected or wrong:
            what = (
                f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected
                else f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, not {tuple(params[wrong[0]].shape)}"
            )
            raise ValueError(f"{source} does not fit this SSM-SAM network ({what})")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state[name].to(p.device, p.dtype))

    # Forward pieces ----------------------------------------------------------------------
    def embed(self, items: list[PreprocessedSlice]) -> torch.Tensor:
        """(B, 64, 64, C) frozen patch embeddings of prepared slices."""
        return self.encoder.embed_patches(model_input(self.sam, items))

    def features(self, patches: torch.Tensor) -> EncoderFeatures:
        """Adapted encoder features of (B, 64, 64, C) patch embeddings."""
        return self.encoder(patches)

    def decode(
        self, query: EncoderFeatures, query_item: PreprocessedSlice, support: EncoderFeatures,
        support_mask: np.ndarray, support_item: PreprocessedSlice, prior: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        """Mask logits of one query slice on its slice grid.

        Args:
            query: the query's features (batch 1); ``query_item`` its prepared slice.
            support: the support slice's features (batch 1), ``support_mask`` its (rows, cols)
                bool mask (M' of the mask attention), ``support_item`` its prepared slice.
            prior: (rows, cols) bool mask the prompt points are sampled from (the support mask
                within the annotated range, the neighbouring prediction beyond it).
            rng: samples the prompt points (None: a generator seeded with ``config.seed``, so
                a prediction is reproducible).

        Returns:
            (rows, cols) float logits on the query's slice grid (differentiable).
        """
        device = query.image_embedding.device
        rng = rng if rng is not None else np.random.default_rng(self.config.seed)
        grid, labels = prompt_grid_points(
            prior, query_item, self.image_size, self.config.positive_points, self.config.negative_points, rng
        )
        tokens = self.prompt(grid.to(device), labels.to(device), query.image_embedding)
        mask = support_mask_grid(support_mask, support_item, self.image_size).to(device)
        prior_grid = None
        if self.config.prior_in_fusion:
            prior_grid = frame_fraction(prior, query_item, self.image_size, 4 * mask.shape[-1]).to(device)
        low_res = self.decoder(query, support, mask, tokens, prior_grid)
        geometry = query_item.geometry
        upscaled = self.sam.postprocess_masks(low_res, tuple(query_item.input_size), tuple(geometry.model_shape))
        return geometry.logits_to_slice(upscaled)[0, 0]

    def decode_example(
        self, query: EncoderFeatures, query_example: SliceExample, support: EncoderFeatures,
        support_example: SliceExample, prior: np.ndarray | None = None, rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        """:meth:`decode` with the support's mask as prior unless ``prior`` is given."""
        return self.decode(
            query, query_example.item, support, support_example.mask, support_example.item,
            support_example.mask if prior is None else prior, rng,
        )


def _divisor(heads: int, width: int) -> int:
    """The largest number of heads <= ``heads`` that divides ``width``."""
    return max(h for h in range(1, heads + 1) if width % h == 0)
