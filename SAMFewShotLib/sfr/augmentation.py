"""Training patches: a seeded random crop (foreground-centred half the time, or class-balanced
with MONAI) and MONAI
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

#: ``Rand3DElasticd``'s smoothing (voxels) and magnitude of the random displacement field.
ELASTIC_SIGMA = (4.0, 6.0)
ELASTIC_MAGNITUDE = (100.0, 300.0)


def random_crop(
    image: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, patch: Sequence[int], rng: np.random.RandomState,
    classes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (patch) crop of (1, z, y, x) ``image``, (z, y, x) int64 ``target`` and float ``weight``
    (zero-padded first where the volume is smaller than the patch; padded voxels weigh 0).

    With ``classes`` (class-balanced, MONAI ``RandCropByLabelClassesd``, equal ratios): the patch
    is centred on a voxel of weight > 0 of a class drawn uniformly among the ``classes``
    (background included), so a small organ is as often in a patch as the liver. Without (the
    default): half the patches are centred on a random foreground voxel, the others uniform. A
    target without any voxel of weight > 0 (an unlabelled image) gives a uniform random crop.
    """
    from monai.transforms import RandCropByLabelClassesd, RandSpatialCropd

    shape = image.shape[1:]
    pad = [max(0, p - s) for p, s in zip(patch, shape)]
    if any(pad):
        spec = []
        for p in reversed(pad):
            spec += [p // 2, p - p // 2]
        image = F.pad(image, spec, value=float(image.min()))
        target = F.pad(target, spec, value=0)
        weight = F.pad(weight, spec, value=0.0)
    data: dict[Hashable, torch.Tensor] = {"image": image, "target": target[None], "weight": weight[None]}
    keys = ("image", "target", "weight")
    size = tuple(int(p) for p in patch)
    out: dict
    if classes is None:  # half foreground-centred, half uniform
        foreground = torch.nonzero(target > 0) if rng.rand() < 0.5 else None
        if foreground is not None and len(foreground):
            centre = foreground[rng.randint(len(foreground))].tolist()
            starts = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, size, image.shape[1:])]
        else:
            starts = [int(rng.randint(0, s - p + 1)) for p, s in zip(size, image.shape[1:])]
        box = tuple(slice(a, a + p) for a, p in zip(starts, size))
        out = {"image": image[(slice(None),) + box], "target": target[box][None], "weight": weight[box][None]}
    elif not bool((weight > 0).any()):
        uniform = RandSpatialCropd(keys=keys, roi_size=size, random_size=False)
        uniform.set_random_state(state=rng)
        out = dict(uniform(data))
    else:
        data["classes"] = torch.where(weight[None] > 0, target[None], torch.full_like(target[None], -1))
        balanced = RandCropByLabelClassesd(keys=keys, label_key="classes", spatial_size=size, ratios=[1] * classes,
                                           num_classes=classes, warn=False)
        balanced.set_random_state(state=rng)
        out = dict(balanced(data)[0])

    def plain(value) -> torch.Tensor:
        return torch.as_tensor(value.as_tensor() if hasattr(value, "as_tensor") else value)

    return plain(out["image"]), plain(out["target"])[0], plain(out["weight"])[0]


def augment(
    image: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, rng: np.random.RandomState,
    elastic: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MONAI augmentation of one patch: (1, z, y, x) image, (z, y, x) target and weight;
    ``elastic``: a random elastic deformation (MONAI ``Rand3DElasticd``, half the patches) too."""
    from monai.transforms import (
        Rand3DElasticd,
        RandAffined,
        RandGaussianNoised,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    data: dict[Hashable, torch.Tensor | np.ndarray] = {
        "image": image, "target": target[None].float(), "weight": weight[None]}
    transforms: tuple = (
        RandAffined(keys=("image", "target", "weight"), prob=0.5, rotate_range=(0.2, 0.2, 0.2),
                    scale_range=(0.1, 0.1, 0.1), mode=("bilinear", "nearest", "nearest"), padding_mode="border"),
        RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
        RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
        RandGaussianNoised(keys="image", std=0.05, prob=0.5),
    )
    if elastic:
        transforms = (Rand3DElasticd(keys=("image", "target", "weight"), sigma_range=ELASTIC_SIGMA,
                                     magnitude_range=ELASTIC_MAGNITUDE, prob=0.5,
                                     mode=("bilinear", "nearest", "nearest"), padding_mode="border"), *transforms)
    for transform in transforms:
        transform.set_random_state(state=rng)
        data = transform(data)

    def as_tensor(value):
        return torch.as_tensor(value.as_tensor() if hasattr(value, "as_tensor") else value)

    return (as_tensor(data["image"]).float(), as_tensor(data["target"])[0].round().long(),
            as_tensor(data["weight"])[0].float())
