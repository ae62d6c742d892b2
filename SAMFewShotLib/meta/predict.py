"""Which slices the adapted network predicts, and in what order.

For one structure with drawn slices z_1 < ... < z_K (the support pairs):

- every slice between z_1 and z_K that is not annotated is predicted with the nearest drawn
  slice as support (keys/values of the mask attention) and its mask as the prior the prompt
  points are sampled from;
- beyond the outermost drawn slices the prediction continues outward one slice at a time, with
  the outermost drawn slice as support and the previous slice's prediction as prior, while the
  prediction holds at least ``max(MIN_PIXELS, MIN_AREA_FRACTION x the support's area)`` pixels,
  and never into a slice declared empty for the structure.

Annotated slices keep their drawn masks. Slices are encoded with the adapted encoder in
batches of ``batch_size`` (the frozen patch embedding of the support slices is reused).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..progress import CancelToken, Progress, no_progress
from ..sam.preprocess import Preprocessing
from ..volume import Volume
from .model import EncoderFeatures
from .network import SSMSam
from .online import PatchCache, nearest
from .slices import SliceExample, prepare

#: An outward prediction smaller than this (pixels) ends the structure ...
MIN_PIXELS = 4
#: ... as does one smaller than this fraction of the outermost drawn mask.
MIN_AREA_FRACTION = 0.02


@dataclass
class LabelSlices:
    """One structure's prediction in the canonical orientation (annotated axis first).

    Attributes:
        first: the first slice index that ``probability`` covers.
        probability: (n, rows, cols) float32 in [0, 1] for slices first .. first + n - 1.
        confidence: {slice index: mean probability of the predicted foreground (0 if none)}.
        encoder_passes: adapted-encoder forward passes made for the predictions.
    """

    first: int
    probability: np.ndarray
    confidence: dict[int, float]
    encoder_passes: int


def _one(features: EncoderFeatures, b: int) -> EncoderFeatures:
    return EncoderFeatures([s[b : b + 1] for s in features.stages], features.image_embedding[b : b + 1])


@torch.no_grad()
def predict_structure(
    network: SSMSam,
    volume: Volume,
    axis: int,
    preprocessing: Preprocessing,
    supports: list[SliceExample],
    empty_slices: set[int],
    *,
    cache: PatchCache,
    batch_size: int = 1,
    stage: str = "meta: predict",
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> LabelSlices:
    """Predict every slice of one structure (see the module docstring).

    Args:
        network: the adapted network.
        volume: the image; slices along numpy ``axis``.
        supports: the drawn slices with their masks, sorted by index.
        empty_slices: slice indices declared free of the structure.
        cache: patch embeddings of the supports (from the online optimiser).
        batch_size: slices per adapted-encoder call.
    """
    n_slices = volume.array.shape[axis]
    annotated = {s.index for s in supports} | set(empty_slices)
    lo, hi = supports[0].index, supports[-1].index
    support_features = {id(s): network.features(cache.get(s)) for s in supports}
    passes = len(supports)
    results: dict[int, np.ndarray] = {s.index: s.mask.astype(np.float32) for s in supports}
    blank = np.zeros_like(supports[0].mask)
    inside = [z for z in range(lo + 1, hi) if z not in annotated]
    outward_total = (n_slices - 1 - hi) + lo
    total = len(inside) + outward_total
    done = 0
    progress(stage, 0, total)

    def run(features: EncoderFeatures, example: SliceExample, support: SliceExample, prior) -> np.ndarray:
        logits = network.decode_example(features, example, support_features[id(support)], support, prior)
        return torch.sigmoid(logits).float().cpu().numpy()

    for first in range(0, len(inside), batch_size):
        if cancel is not None:
            cancel.raise_if_cancelled()
        chunk = [
            prepare(network.sam, volume, axis, z, preprocessing, blank) for z in inside[first : first + batch_size]
        ]
        features = network.features(network.embed([e.item for e in chunk]))
        passes += 1
        for b, example in enumerate(chunk):
            support = nearest(example.index, supports)
            results[example.index] = run(_one(features, b), example, support, support.mask)
        done += len(chunk)
        progress(stage, done, total)

    for support, direction in ((supports[-1], 1), (supports[0], -1)):
        prior = support.mask
        minimum = max(MIN_PIXELS, MIN_AREA_FRACTION * float(support.mask.sum()))
        z = support.index + direction
        while 0 <= z < n_slices and z not in annotated:
            if cancel is not None:
                cancel.raise_if_cancelled()
            example = prepare(network.sam, volume, axis, z, preprocessing, blank)
            probability = run(network.features(network.embed([example.item])), example, support, prior)
            passes += 1
            results[z] = probability
            done += 1
            progress(stage, done, total)
            prior = probability > 0.5
            if prior.sum() < minimum:
                break
            z += direction
    progress(stage, total, total)

    first, last = min(results), max(results)
    stack = np.zeros((last - first + 1, *blank.shape), np.float32)
    confidence = {}
    for z, probability in results.items():
        stack[z - first] = probability
        fg = probability > 0.5
        confidence[z] = 1.0 if z in annotated else (float(probability[fg].mean()) if fg.any() else 0.0)
    return LabelSlices(first, stack, confidence, passes)
