"""The few-shot mask decoder (Xie et al., "SAM fewshot finetuning for anatomical segmentation in
medical images", WACV 2024): SAM's mask decoder prompted by target embeddings instead of points.

Tokens of one decoder item, joint pass (one slice, all L labels; Xie et al.'s multi-label
decoding; :meth:`FewShotMaskDecoder.forward_joint`)::

    [fg_1, bg_1, ..., fg_L, bg_L, targets of label 1 (N_1), ..., targets of label L (N_L)]

so every label's output tokens attend to every label's target embeddings (the contrast that
separates touching structures of the same intensity). A learned label embedding e_l is added to
label l's output tokens and to its target tokens, saying whose target a token is; with several
labels it starts random (seeded, half the scale of SAM's mask token), since with identical
starting tokens every label's output stays the same and one label takes the union of all (the
measured failure of a zero start); with one label it starts at zero. The per-label pass (one item per
slice and label, ``[fg + e_l, bg + e_l, targets of the label + e_l]``;
:meth:`FewShotMaskDecoder.forward`) is the default (``TrainingConfig.joint``): on the tiny random
SAM of the tests it separates touching structures better (a deviation, measured in
benchmarks/bench_fewshot_joint.py and listed in the README). Heads written before the label
embeddings load with e_l = 0 (their exact former behaviour). With one label both passes give the
same logits.

The two output tokens are learned per label; the N prompt tokens are masked averages of SAM
image embeddings under the label's drawn masks (:mod:`.targets`), passed through a learned
linear map (identity at the start, its bias SAM's "foreground point" type embedding). There is
no point/box prompt encoder. SAM's pretrained pieces are the starting point: the two-way
transformer, the output upscaling, the dense "no mask" embedding, the positional encoding of the
prompt encoder, and the first mask token's hypernetwork MLP (copied for the fg and the bg
token; the bg copy's last layer starts at zero so the untrained head is "SAM prompted with the
target embeddings").

Output: two logits per pixel (fg, bg) on SAM's low-resolution 4h x 4w frame (256 x 256 for a
64 x 64 embedding); the probability of the label is ``softmax(fg, bg)[0] = sigmoid(fg - bg)``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from segment_anything.modeling import Sam


class FewShotMaskDecoder(nn.Module):
    """SAM's two-way-transformer mask decoder driven by target-embedding prompt tokens.

    Args:
        transformer: SAM's ``TwoWayTransformer`` (C wide).
        output_upscaling: SAM's ``output_upscaling`` (C x h x w -> C/8 x 4h x 4w).
        foreground_mlp: hypernetwork MLP (C -> C/8) of the fg output token.
        background_mlp: hypernetwork MLP (C -> C/8) of the bg output token.
        positional_encoding: SAM's ``PositionEmbeddingRandom`` (the prompt encoder's ``pe_layer``).
        dense_embedding: (C,) added to every image embedding cell (SAM's ``no_mask_embed``).
        token_type: (C,) initial bias of the prompt-token map (SAM's fg point embedding).
        output_tokens: (n_labels, 2, C) initial fg/bg output tokens.
        embedding_size: (h, w) of the image embedding grid, (64, 64) for SAM.
    """

    def __init__(
        self,
        transformer: nn.Module,
        output_upscaling: nn.Module,
        foreground_mlp: nn.Module,
        background_mlp: nn.Module,
        positional_encoding: nn.Module,
        dense_embedding: torch.Tensor,
        token_type: torch.Tensor,
        output_tokens: torch.Tensor,
        embedding_size: tuple[int, int],
    ) -> None:
        super().__init__()
        if output_tokens.ndim != 3 or output_tokens.shape[1] != 2:
            raise ValueError(f"output_tokens must be (n_labels, 2, C), not shape {tuple(output_tokens.shape)}")
        width = int(output_tokens.shape[2])
        self.transformer = transformer
        self.output_upscaling = output_upscaling
        self.hypernetworks = nn.ModuleList([foreground_mlp, background_mlp])
        self.positional_encoding = positional_encoding
        self.dense_embedding = nn.Parameter(dense_embedding.detach().clone().reshape(width))
        self.output_tokens = nn.Parameter(output_tokens.detach().clone())
        self.label_embeddings = nn.Parameter(_label_codes(self.output_tokens[:, 0].detach()))
        self.prompt_projection = nn.Linear(width, width)
        with torch.no_grad():
            self.prompt_projection.weight.copy_(torch.eye(width))
            self.prompt_projection.bias.copy_(token_type.detach().reshape(width))
        self.embedding_size = (int(embedding_size[0]), int(embedding_size[1]))

    @classmethod
    def from_sam(cls, sam: Sam, n_labels: int) -> FewShotMaskDecoder:
        """A decoder for ``n_labels`` labels starting from a SAM's pretrained pieces (deep copies;
        the SAM is left untouched). Output tokens start as SAM's first mask token."""
        if n_labels < 1:
            raise ValueError(f"n_labels must be >= 1, not {n_labels}")
        decoder, prompts = sam.mask_decoder, sam.prompt_encoder
        mask_token = decoder.mask_tokens.weight[0].detach()
        background_mlp = copy.deepcopy(decoder.output_hypernetworks_mlps[0])
        last = background_mlp.layers[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        return cls(
            transformer=copy.deepcopy(decoder.transformer),
            output_upscaling=copy.deepcopy(decoder.output_upscaling),
            foreground_mlp=copy.deepcopy(decoder.output_hypernetworks_mlps[0]),
            background_mlp=background_mlp,
            positional_encoding=copy.deepcopy(prompts.pe_layer),
            dense_embedding=prompts.no_mask_embed.weight[0],
            token_type=prompts.point_embeddings[1].weight[0],
            output_tokens=mask_token.expand(n_labels, 2, -1),
            embedding_size=tuple(prompts.image_embedding_size),
        ).to(mask_token.device)

    @property
    def n_labels(self) -> int:
        return int(self.output_tokens.shape[0])

    @property
    def width(self) -> int:
        """C, the channel count of image embeddings and tokens."""
        return int(self.output_tokens.shape[2])

    def forward(
        self, image_embeddings: torch.Tensor, target_tokens: torch.Tensor, label_index: int
    ) -> torch.Tensor:
        """Two-channel mask logits of one label for a batch of slices.

        Args:
            image_embeddings: (B, C, h, w) float32 SAM image embeddings, one per slice.
            target_tokens: (N, C) target embeddings shared by the batch, or (B, N, C).
            label_index: which label's output tokens to use, 0 <= index < n_labels.

        Returns:
            (B, 2, 4h, 4w) float32 logits (channel 0 fg, 1 bg) in SAM's low-resolution frame
            (the padded 1024-pixel input seen at a quarter of its resolution).
        """
        if not 0 <= label_index < self.n_labels:
            raise ValueError(f"label_index must be in 0..{self.n_labels - 1}, not {label_index}")
        b = image_embeddings.shape[0]
        if target_tokens.ndim == 2:
            target_tokens = target_tokens.unsqueeze(0).expand(b, -1, -1)
        code = self.label_embeddings[label_index]
        prompts = self.prompt_projection(target_tokens) + code
        outputs = (self.output_tokens[label_index] + code).unsqueeze(0).expand(b, -1, -1)
        return self._decode(image_embeddings, torch.cat([outputs, prompts], dim=1), 1)[:, 0]

    def forward_joint(self, image_embeddings: torch.Tensor, target_tokens) -> torch.Tensor:
        """Two-channel mask logits of every label in one decoder pass (Xie et al., multi-label).

        Args:
            image_embeddings: (B, C, h, w) float32 SAM image embeddings, one per slice.
            target_tokens: one entry per label index (all ``n_labels``), each (N_l, C) shared by
                the batch or (B, N_l, C).

        Returns:
            (B, n_labels, 2, 4h, 4w) float32 logits (channel 0 fg, 1 bg) per label.
        """
        if len(target_tokens) != self.n_labels:
            raise ValueError(
                f"The joint pass needs target tokens of all {self.n_labels} labels, not {len(target_tokens)}"
            )
        b = image_embeddings.shape[0]
        prompts = []
        for index, tokens in enumerate(target_tokens):
            if tokens.ndim == 2:
                tokens = tokens.unsqueeze(0).expand(b, -1, -1)
            prompts.append(self.prompt_projection(tokens) + self.label_embeddings[index])
        outputs = self.output_tokens + self.label_embeddings.unsqueeze(1)
        outputs = outputs.reshape(1, 2 * self.n_labels, self.width).expand(b, -1, -1)
        return self._decode(image_embeddings, torch.cat([outputs, *prompts], dim=1), self.n_labels)

    def _decode(self, image_embeddings: torch.Tensor, tokens: torch.Tensor, n_outputs: int) -> torch.Tensor:
        """SAM's decoder on (B, T, C) tokens whose first 2 * n_outputs are (fg, bg) output tokens;
        returns (B, n_outputs, 2, 4h, 4w) logits."""
        b, c, h, w = image_embeddings.shape
        src = image_embeddings + self.dense_embedding.view(1, c, 1, 1)
        pos = self.positional_encoding((h, w)).unsqueeze(0).expand(b, -1, -1, -1)
        hs, src = self.transformer(src, pos, tokens)
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        outputs = hs[:, : 2 * n_outputs].reshape(b, n_outputs, 2, c)
        hyper = torch.stack([mlp(outputs[:, :, i]) for i, mlp in enumerate(self.hypernetworks)], dim=2)
        _, channels, up_h, up_w = upscaled.shape
        logits = hyper.reshape(b, 2 * n_outputs, channels) @ upscaled.view(b, channels, up_h * up_w)
        return logits.view(b, n_outputs, 2, up_h, up_w)




def _label_codes(tokens: torch.Tensor) -> torch.Tensor:
    """(L, C) starting label embeddings for (L, C) starting output tokens: zeros for one label,
    else seeded Gaussian codes of half the tokens' standard deviation (see the module doc)."""
    if tokens.shape[0] == 1:
        return torch.zeros_like(tokens)
    generator = torch.Generator().manual_seed(tokens.shape[0])
    codes = torch.randn(tokens.shape, generator=generator, dtype=tokens.dtype)
    return (0.5 * float(tokens.std()) * codes).to(tokens.device)
