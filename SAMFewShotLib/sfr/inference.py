"""Segmenting a volume with a trained study network: resample to the working spacing, normalise,
MONAI sliding-window inference (Gaussian-weighted overlapping patches), the class probabilities
resampled linearly back onto the image's grid, argmax there."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..atlas.normalisation import normalise
from ..progress import CancelToken, Progress, no_progress
from ..volume import Volume, label_dtype
from .resampling import probabilities_onto_grid, to_spacing

STAGE = "sfr: inference"


def window_logits(network: torch.nn.Module, tensor: torch.Tensor, patch: int, overlap: float = 0.25) -> torch.Tensor:
    """(1, C, z, y, x) logits of the (1, 1, z, y, x) normalised ``tensor`` by MONAI sliding-window
    inference (cubic ``patch`` windows, Gaussian-weighted overlap, replicate padding); the caller
    sets eval mode and ``torch.no_grad``."""
    from monai.inferers import sliding_window_inference

    logits = sliding_window_inference(tensor, (patch,) * 3, 1, network, overlap=overlap, mode="gaussian",
                                      padding_mode="replicate")
    assert isinstance(logits, torch.Tensor), "the network gives one logits tensor, not a tuple or dict"
    return logits.as_tensor() if hasattr(logits, "as_tensor") else logits


def predict_probabilities(
    network: torch.nn.Module, image: Volume, *, spacing: Sequence[float], normalisation: dict, patch: int,
    device: str | torch.device = "cpu", overlap: float = 0.25,
) -> tuple[np.ndarray, Volume]:
    """((C, z, y, x) float32 softmax probabilities on the working grid, the working-grid volume)."""
    working = to_spacing(image, spacing)
    tensor = torch.from_numpy(normalise(working.array, normalisation)[None, None].copy()).to(device)
    network = network.to(device).eval()
    with torch.no_grad():
        logits = window_logits(network, tensor, patch, overlap)
    return torch.softmax(logits, dim=1)[0].cpu().numpy().astype(np.float32), working


def segment(
    network: torch.nn.Module, image: Volume, *, label_values: Sequence[int], spacing: Sequence[float],
    normalisation: dict, patch: int, device: str | torch.device = "cpu", progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> Volume:
    """The (z, y, x) label map of ``image`` on its own grid (label values, not class indices)."""
    if cancel is not None:
        cancel.raise_if_cancelled()
    progress(STAGE, 0, 1)
    probabilities, working = predict_probabilities(network, image, spacing=spacing, normalisation=normalisation,
                                                   patch=patch, device=device)
    if not working.same_grid(image):  # probabilities (not labels) go back: smooth boundaries at any working spacing
        probabilities = probabilities_onto_grid(probabilities, working, image)
    classes = probabilities.argmax(axis=0)
    lookup = np.asarray([0] + [int(v) for v in label_values])
    labels = lookup[classes].astype(label_dtype(max(max(label_values, default=1), 1)))
    progress(STAGE, 1, 1)
    return image.with_array(labels)
