"""Training patches: a seeded random crop (half of them centred on a foreground voxel) and MONAI
augmentation (small random affine applied to image, target and weight together; intensity
scale, shift and Gaussian noise on the image).

Randomness is drawn from ``numpy.random.RandomState(seed)`` per call, so a run's patches are a
function of (seed, iteration, slot) only and a resumed run draws exactly the same ones.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch
from torch.nn import functional as F


def random_crop(
    image: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, patch: Sequence[int], rng: np.random.RandomState,
    foreground_probability: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (patch) crop of (1, z, y, x) ``image``, (z, y, x) int64 ``target`` and float ``weight``
    (zero-padded first where the volume is smaller than the patch; padded voxels weigh 0)."""
    shape = image.shape[1:]
    pad = [max(0, p - s) for p, s in zip(patch, shape)]
    if any(pad):
        spec = []
        for p in reversed(pad):
            spec += [p // 2, p - p // 2]
        image = F.pad(image, spec, value=float(image.min()))
        target = F.pad(target, spec, value=0)
        weight = F.pad(weight, spec, value=0.0)
        shape = image.shape[1:]
    foreground = torch.nonzero(target > 0) if rng.rand() < foreground_probability else None
    starts = []
    if foreground is not None and len(foreground):
        centre = foreground[rng.randint(len(foreground))].tolist()
        for c, p, s in zip(centre, patch, shape):
            starts.append(int(np.clip(c - p // 2, 0, s - p)))
    else:
        starts = [int(rng.randint(0, s - p + 1)) for p, s in zip(patch, shape)]
    box = tuple(slice(a, a + p) for a, p in zip(starts, patch))
    return image[(slice(None),) + box], target[box], weight[box]


def augment(
    image: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, rng: np.random.RandomState
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MONAI augmentation of one patch: (1, z, y, x) image, (z, y, x) target and weight."""
    from monai.transforms import (
        RandAffined,
        RandGaussianNoised,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    data: dict[Hashable, torch.Tensor | np.ndarray] = {
        "image": image, "target": target[None].float(), "weight": weight[None]}
    transforms = (
        RandAffined(keys=("image", "target", "weight"), prob=0.5, rotate_range=(0.2, 0.2, 0.2),
                    scale_range=(0.1, 0.1, 0.1), mode=("bilinear", "nearest", "nearest"), padding_mode="border"),
        RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
        RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
        RandGaussianNoised(keys="image", std=0.05, prob=0.5),
    )
    for transform in transforms:
        transform.set_random_state(state=rng)
        data = transform(data)

    def as_tensor(value):
        return torch.as_tensor(value.as_tensor() if hasattr(value, "as_tensor") else value)

    return (as_tensor(data["image"]).float(), as_tensor(data["target"])[0].round().long(),
            as_tensor(data["weight"])[0].float())
