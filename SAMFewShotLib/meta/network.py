"""SSM-SAM: a frozen SAM with adapters, self-sampling prompts and a mask attention decoder.

Trainable: the encoder's adapters, the self-sampling prompt module, the mask attention
sub-blocks and their fusion weights, and a copy of SAM's mask decoder. Frozen: SAM's ViT, its
neck and its prompt encoder (positional encodings, point embeddings). Only the trainable
tensors are saved in an init file (:mod:`SAMFewShotLib.meta.init_file`).

The plain init (no meta-learning) is deterministic (``config.seed``) and starts from SAM itself:
zero adapters (the encoder is exactly SAM's), zero fusion weights (the decoder sees SAM's image
embedding), zero residual branches in the prompt module (the point tokens are SAM's point
prompts; the global queries start as copies of SAM's padding token), SAM's own mask decoder,
given the prior mask as SAM's dense mask prompt (SAM-MPA's softened coarse mask).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import nn

from ..sam.preprocess import PreprocessedSlice, model_input
from ..sam.prompts import mask_prompt, soft_logits
from .config import MetaConfig
from .mask_attention_decoder import FlexibleMaskAttentionDecoder
from .model import AdaptedViT, EncoderFeatures
from .self_sampling_prompt import SelfSamplingPrompt
from .slices import SliceExample, prompt_points, support_weights


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
        self.prompt_encoder = sam.prompt_encoder
        dim = int(sam.prompt_encoder.embed_dim)
        heads = config.attention_heads(dim)
        device = sam.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.encoder = AdaptedViT(sam.image_encoder, config.adapter_rank, config.checkpointing)
            self.prompt = SelfSamplingPrompt(
                dim, config.global_queries, heads, sam.prompt_encoder.not_a_point_embed.weight
            )
            self.decoder = FlexibleMaskAttentionDecoder(
                self.encoder.width, copy.deepcopy(sam.mask_decoder), heads, config.key_pool
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
    ) -> torch.Tensor:
        """Mask logits of one query slice on its slice grid.

        Args:
            query: the query's features (batch 1); ``query_item`` its prepared slice.
            support: the support slice's features (batch 1), ``support_mask`` its (rows, cols)
                bool mask, ``support_item`` its prepared slice.
            prior: (rows, cols) bool mask the prompt points are sampled from (the support mask
                within the annotated range, the neighbouring prediction beyond it).

        Returns:
            (rows, cols) float logits on the query's slice grid (differentiable).
        """
        device = query.image_embedding.device
        points = prompt_points(prior, query_item, self.image_size)
        coords, labels = (None, None) if points is None else (points[0].to(device), points[1].to(device))
        prior_in_model = query_item.geometry.image_to_model(soft_logits(prior))
        mask_input = mask_prompt(prior_in_model, query_item.input_size, self.image_size)
        sparse, dense = self.prompt_encoder(
            points=None if coords is None else (coords, labels), boxes=None, masks=mask_input[None].to(device)
        )
        if coords is not None and labels is not None:  # SAM pads point prompts with one "not a point" token
            coords = torch.cat([coords, torch.zeros_like(coords[:, :1])], dim=1)
            labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
        image_pe = self.prompt_encoder.get_dense_pe()
        tokens = self.prompt(sparse, coords, labels, query.image_embedding, image_pe, self.image_size)
        weights = support_weights(support_mask, support_item, self.config.mask_sigma, self.image_size).to(device)
        low_res = self.decoder(query, support, weights, tokens, image_pe, dense)
        geometry = query_item.geometry
        upscaled = self.sam.postprocess_masks(low_res, tuple(query_item.input_size), tuple(geometry.model_shape))
        return geometry.logits_to_slice(upscaled)[0, 0]

    def decode_example(
        self, query: EncoderFeatures, query_example: SliceExample, support: EncoderFeatures,
        support_example: SliceExample, prior: np.ndarray | None = None,
    ) -> torch.Tensor:
        """:meth:`decode` with the support's mask as prior unless ``prior`` is given."""
        return self.decode(
            query, query_example.item, support, support_example.mask, support_example.item,
            support_example.mask if prior is None else prior,
        )
