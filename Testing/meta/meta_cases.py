"""Small SAM checkpoints and learnable synthetic volumes for the meta engine's tests.

``small_sam_checkpoint``: a SAM of the official structure (ViT with windowed and global
attention, prompt encoder, two-way-transformer decoder) built by the library's own builder with
a 256-pixel input (16 x 16 embedding grid), narrow widths and random weights: an online step
costs a few tens of milliseconds, so learning tests can take dozens of steps.

``textured_case``: a 3D ellipsoid with vertical stripes (the target) among two smooth blobs of
the same mean intensity (distractors) on a darker textured background: an intensity threshold
cannot tell them apart, the target's place and texture can.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.sam.architecture import DecoderSpec, SamArchitecture, ViTEncoderSpec
from SAMFewShotLib.sam.model_building import build_sam
from SAMFewShotLib.volume import LabelVolume, Volume


def small_sam_checkpoint(path: Path, seed: int = 0, img_size: int = 256, embed_dim: int = 16) -> Path:
    """Save a randomly initialised small SAM's state dict (as official checkpoints are saved)."""
    torch.manual_seed(seed)
    architecture = SamArchitecture(
        model_type="custom",
        encoder=ViTEncoderSpec(
            embed_dim=embed_dim, depth=4, num_heads=2, global_attn_indexes=(3,), window_size=8,
            img_size=img_size, out_chans=32,
        ),
        decoder=DecoderSpec(prompt_dim=32, mlp_dim=64, num_heads=2, iou_head_hidden_dim=32),
    )
    torch.save(build_sam(architecture).state_dict(), path)
    return Path(path)


def ellipsoid(center, radii, shape) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii)) <= 1


def textured_case(seed: int, shape=(16, 48, 48), jitter: float = 0.0) -> tuple[Volume, np.ndarray]:
    """(image, target mask): the striped target ellipsoid among two smooth distractor blobs.

    ``jitter`` moves and resizes the objects at random (as a fraction of the image size), for
    the different tasks of meta-training."""
    image, labels = textured_organs(seed, shape, jitter)
    return image, labels == 1


def textured_organs(seed: int, shape=(16, 48, 48), jitter: float = 0.0) -> tuple[Volume, np.ndarray]:
    """:func:`textured_case` with every object labelled: (image, uint8 labels) with 1 the striped
    target and 2, 3 the upper and lower distractor blobs (three "organs" for leave-one-organ-out
    meta-training)."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    move = lambda scale: rng.uniform(-jitter, jitter) * scale  # noqa: E731
    target = ellipsoid(
        (nz / 2, ny / 2 + move(ny), nx * 0.31 + move(nx)),
        (nz * 0.44, ny * 0.21 * (1 + move(1)), nx * 0.17 * (1 + move(1))),
        shape,
    )
    upper = ellipsoid((nz / 2, ny * 0.25 + move(ny), nx * 0.75), (nz * 0.44, ny * 0.13, nx * 0.15), shape) & ~target
    lower = ellipsoid((nz / 2, ny * 0.75 + move(ny), nx * 0.75), (nz * 0.44, ny * 0.13, nx * 0.15), shape) & ~target
    lower &= ~upper
    distractors = upper | lower

    def smooth(sigma: float) -> np.ndarray:
        field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
        return field / field.std()

    period = 4.0 + rng.uniform(-0.5, 0.5)
    stripes = 25.0 * np.sin(2 * np.pi * np.arange(nx) / period)[None, None, :]
    image = 40.0 + 6.0 * smooth(1.5)
    image = np.where(target, 100.0 + stripes, image)
    image = np.where(distractors, 100.0 + 10.0 * smooth(2.0), image)
    image = image + rng.normal(0.0, 4.0, shape)
    labels = np.zeros(shape, np.uint8)
    labels[target], labels[upper], labels[lower] = 1, 2, 3
    volume = Volume(image.astype(np.float32), spacing=(1.0, 1.0, 2.0), origin=(5.0, -3.0, 10.0))
    return volume, labels


def annotation_of(volume: Volume, truth: np.ndarray, drawn) -> SparseAnnotation:
    """``truth`` (z, y, x bool) drawn as label 1 on the axial slices ``drawn`` of ``volume``."""
    labels = np.zeros(truth.shape, np.uint8)
    for z in drawn:
        labels[z][truth[z]] = 1
    return SparseAnnotation.from_labels(LabelVolume(volume.with_array(labels)), axis=0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / total


def best_threshold_dice(image: np.ndarray, truth: np.ndarray, train: list[int], test: list[int]) -> float:
    """Dice on ``test`` slices of the intensity threshold that scores best on the ``train`` slices
    (the trivial baseline)."""
    candidates = np.quantile(image, np.linspace(0.02, 0.98, 49))
    best = max(candidates, key=lambda t: dice(image[train] > t, truth[train]))
    return dice(image[test] > best, truth[test])
