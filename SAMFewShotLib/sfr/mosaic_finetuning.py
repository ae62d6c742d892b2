"""SAM fine-tuned on mosaics (SFR's second stage) as a pseudo-label source.

The labelled volume's slices are stitched into 1024 x 1024 mosaics (:mod:`.stitching`, n x n
consecutive slices) and encoded once by SAM's frozen image encoder. The few-shot decoder of
:mod:`SAMFewShotLib.fewshot` (SAM's mask decoder prompted by target embeddings, Xie et al.) is
trained on the mosaic embeddings with :func:`SAMFewShotLib.fewshot.training.train_decoder`: one
example per (mosaic, label) whose mask holds the label; its target is the label's share of each
low-resolution (256 x 256) pixel, its valid region the tiles' content, its prompt tokens the
masked-average embeddings of the label in the *other* labelled mosaics (its own when it is the
only one). An unlabelled volume's mosaics are then decoded with the tokens of every labelled
mosaic; each label's probability (``sigmoid(fg - bg)``, bilinear to 1024 pixels) is unstitched
back to the slices, the background's is ``1 - max`` over labels, and the per-voxel and
per-volume confidences follow :func:`.pseudo_labels.probability_confidence`.

Adapters in the encoder (the paper's option on a GPU) are not used: the encoder stays frozen.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from ..progress import CancelToken, Progress, no_progress
from ..sam.preprocess import Preprocessing
from ..volume import LabelVolume, Volume, label_dtype
from .pseudo_labels import PseudoLabel, probability_confidence
from .stitching import (
    MosaicLayout,
    default_grid,
    plan_mosaics,
    stitch,
    stitch_image,
    unstitch_volume,
)

if TYPE_CHECKING:
    from ..fewshot.training import TrainingResult

STAGE_ENCODE = "sfr: encode mosaics"
STAGE_DECODE = "sfr: decode mosaics"


@torch.no_grad()
def encode_mosaics(
    sam, volume: Volume, layouts: Sequence[MosaicLayout], preprocessing: Preprocessing, *,
    progress: Progress = no_progress, cancel: CancelToken | None = None,
) -> torch.Tensor:
    """(M, C, 64, 64) float32 SAM image embeddings of the M mosaics (on the CPU)."""
    device = next(sam.parameters()).device
    out = []
    for i, layout in enumerate(layouts):
        if cancel is not None:
            cancel.raise_if_cancelled()
        rgb = stitch_image(volume, layout, preprocessing)
        if getattr(sam, "image_format", "RGB") != "RGB":
            rgb = rgb[..., ::-1]
        pixels = torch.as_tensor(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].to(device)
        out.append(sam.image_encoder(sam.preprocess(pixels)).float().cpu())
        progress(STAGE_ENCODE, i + 1, len(layouts))
    return torch.cat(out)


def _frames(mask_mosaic: np.ndarray, embedding_grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """((grid, grid) pooled weights for tokens, (4 grid, 4 grid) low-resolution target) of a
    (1024, 1024) {0, 1} mosaic."""
    frame = torch.from_numpy(np.ascontiguousarray(mask_mosaic, dtype=np.float32))[None, None]
    size = frame.shape[-1]
    return (F.avg_pool2d(frame, size // embedding_grid)[0, 0],
            F.avg_pool2d(frame, size // (4 * embedding_grid))[0, 0])


class SamSource:
    """Pseudo-labels from SAM fine-tuned on the labelled volume's mosaics (see the module doc).

    Args:
        sam: a loaded SAM (``segment_anything`` ``Sam``); or give ``checkpoint``.
        checkpoint: SAM checkpoint path or registry name (loaded with
            :func:`SAMFewShotLib.sam.model_loading.load_sam`).
        axis: numpy axis of the stitched slices (0 axial).
        grid: n (n x n slices per mosaic); None: :func:`.stitching.default_grid`.
        window: intensity window ("auto", "percentile" or a CT preset).
        iterations: decoder training steps.
        device: "auto", "cpu" or "cuda".
        seed: seed of the decoder training's augmentation.
    """

    name = "sam"

    def __init__(self, sam=None, *, checkpoint: str | None = None, axis: int = 0, grid: int | None = None,
                 window: str = "auto", iterations: int = 100, device: str = "auto", seed: int = 0) -> None:
        from ..atlas.rrl.training import resolve_device

        if (sam is None) == (checkpoint is None):
            raise ValueError("The SAM pseudo-label source needs exactly one of a loaded SAM or a checkpoint")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive integer, not {iterations!r}")
        self.device = resolve_device(device)
        if sam is None:
            from ..sam.model_loading import load_sam

            assert checkpoint is not None  # exactly one of sam and checkpoint, checked above
            sam, _ = load_sam(checkpoint)
        self.sam = sam.to(self.device).eval()
        self.axis, self.grid, self.window, self.iterations, self.seed = axis, grid, window, iterations, seed
        self._fitted: tuple | None = None  # (key, decoder, tokens per label, label values, preprocessing)
        self.training: TrainingResult | None = None

    def _grid(self, volume: Volume) -> int:
        return self.grid if self.grid is not None else default_grid(volume, self.axis)

    def fit(self, labelled_image: Volume, labelled_labels: LabelVolume, *, progress: Progress = no_progress,
            cancel: CancelToken | None = None) -> None:
        """Train the decoder on the labelled volume's mosaics (once per labelled volume)."""
        from ..fewshot.decoder import FewShotMaskDecoder
        from ..fewshot.training import Example, TrainingConfig, train_decoder

        key = (id(labelled_image), id(labelled_labels))
        if self._fitted is not None and self._fitted[0] == key:
            return
        labelled_image.require_same_grid(labelled_labels.volume, "labelled volume's label map")
        values = labelled_labels.label_values()
        if not values:
            raise ValueError("The labelled volume's label map holds no label (all 0)")
        preprocessing = Preprocessing.for_volume(labelled_image, self.window)
        layouts = plan_mosaics(labelled_image, self.axis, self._grid(labelled_image))
        embeddings = encode_mosaics(self.sam, labelled_image, layouts, preprocessing, progress=progress, cancel=cancel)
        grid = embeddings.shape[-1]
        examples, tokens = [], []
        for label_index, value in enumerate(values):
            frames = []
            for m, layout in enumerate(layouts):
                mask = stitch(labelled_labels.array == value, layout, linear=False)
                if mask.any():
                    frames.append((m, *_frames(mask, grid), layout))
            label_tokens = [(embeddings[m] * w).sum(dim=(1, 2)) / w.sum() for m, w, _, _ in frames]
            tokens.append(torch.stack(label_tokens))
            for j, (m, _, target, layout) in enumerate(frames):
                others = [t for k, t in enumerate(label_tokens) if k != j] or label_tokens
                valid = _frames(layout.content_mask(), grid)[1] > 0
                examples.append(Example(label_index, m, embeddings[m], target, valid, torch.stack(others)))
        decoder = FewShotMaskDecoder.from_sam(self.sam, len(values)).to(self.device)
        config = TrainingConfig(iterations=self.iterations, seed=self.seed)
        self.training = train_decoder(decoder, examples, config=config, progress=progress, cancel=cancel)
        self._fitted = (key, decoder, tokens, values, preprocessing)

    @torch.no_grad()
    def probabilities(self, image: Volume, *, progress: Progress = no_progress,
                      cancel: CancelToken | None = None) -> np.ndarray:
        """(1 + L, z, y, x) float32 class probabilities of ``image`` (background first), after :meth:`fit`."""
        if self._fitted is None:
            raise ValueError("Fit the SAM source on the labelled volume first")
        _, decoder, tokens, values, preprocessing = self._fitted
        layouts = plan_mosaics(image, self.axis, self._grid(image))
        embeddings = encode_mosaics(self.sam, image, layouts, preprocessing, progress=progress, cancel=cancel)
        per_label = []
        for label_index in range(len(values)):
            mosaics = []
            for m in range(len(layouts)):
                logits = decoder(embeddings[m:m + 1].to(self.device), tokens[label_index].to(self.device), label_index)
                probability = torch.sigmoid(logits[:, 0] - logits[:, 1])[None]
                mosaics.append(F.interpolate(probability, (layouts[m].size,) * 2, mode="bilinear",
                                             align_corners=False)[0, 0].cpu().numpy())
                progress(STAGE_DECODE, label_index * len(layouts) + m + 1, len(values) * len(layouts))
            per_label.append(unstitch_volume(mosaics, layouts, image.shape, linear=True))
        foreground = np.stack(per_label).astype(np.float32)
        classes = np.concatenate([1.0 - foreground.max(axis=0, keepdims=True), foreground])
        return classes / np.clip(classes.sum(axis=0, keepdims=True), 1e-6, None)

    def __call__(self, labelled_image, labelled_labels, image, *, progress=no_progress, cancel=None) -> PseudoLabel:
        start = time.perf_counter()
        self.fit(labelled_image, labelled_labels, progress=progress, cancel=cancel)
        assert self._fitted is not None  # set by fit
        values = self._fitted[3]
        probabilities = self.probabilities(image, progress=progress, cancel=cancel)
        index, confidence, volume_confidence = probability_confidence(probabilities)
        lookup = np.asarray([0] + list(values))
        labels = image.with_array(lookup[index].astype(label_dtype(max(values))))
        return PseudoLabel(LabelVolume(labels, labelled_labels.segments), confidence, volume_confidence, self.name,
                           time.perf_counter() - start)
