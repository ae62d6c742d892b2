"""The paper's training augmentation (mirroring, spatial, rotation, scaling) with TorchIO transforms.

RRL-MedSAM (Wang et al., arXiv 2504.20501, implementation details) augments its training
volumes by mirroring, spatial (elastic) deformation, rotation and scaling. Here, for each joint
iteration:

- *mirroring* (``tio.RandomFlip``, left-right = numpy axis x, probability 0.5) is applied to the
  atlas image, its working-grid labels and the target *together*: flipping only one of them
  would ask the registration for a mirror image, which no smooth displacement is;
- *rotation and scaling* (``tio.RandomAffine``: up to 10 degrees, scale 0.9-1.1, probability
  0.5) and the *spatial* deformation (``tio.RandomElasticDeformation``: 7 control points per
  axis, at most ``size`` * 7.5 / 128 voxels, probability 0.5) are applied to the unlabelled
  target only, so that the registration sees new deformations; no label of the target is
  needed (its supervision is the atlas labels warped by the predicted displacement).

TorchIO draws from torch's global generator; :func:`augment_pair` runs it under
``torch.random.fork_rng`` seeded from the trainer's own generator, so a run and its resume draw
the same transforms and the caller's random state is untouched. Tensors are treated as
1 mm-isotropic voxel grids (the cube's own spacing does not matter for these ranges).

Training augments the network's working grid (the size^3 cube 2x average-pooled, what the
network sees), not the cube: the displacement bound scales with the grid, so it is the same
physical bound, and TorchIO's elastic B-spline resampling costs 8x less (measured on the
abdominal CT, 128^3 cube, 1 thread: 0.53 -> 0.07 CPU-s per iteration).
"""

from __future__ import annotations

import torch

#: Probabilities and ranges (see the module docstring).
FLIP_PROBABILITY = 0.5
AFFINE_PROBABILITY = 0.5
ELASTIC_PROBABILITY = 0.5
DEGREES = 10.0
SCALES = 0.1
CONTROL_POINTS = 7
MAX_DISPLACEMENT_AT_128 = 7.5


def augment_pair(
    atlas: torch.Tensor, atlas_onehot: torch.Tensor, target: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augmented copies of one training pair (inputs are not modified).

    Args:
        atlas: (1, 1, D, H, W) float32 atlas image in [0, 1], (z, y, x).
        atlas_onehot: (1, C, D', H', W') float32 atlas class probabilities (training: both on the
            working grid; only mirrored, so any grid).
        target: (1, 1, D, H, W) float32 unlabelled image in [0, 1].
        generator: the trainer's generator; one int64 is drawn from it to seed TorchIO.

    Returns:
        (atlas, atlas_onehot, target) with the same shapes, dtypes and devices.
    """
    import torchio as tio

    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    device = target.device
    size = target.shape[-1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pair = tio.Subject(atlas=tio.ScalarImage(tensor=atlas[0].cpu()), target=tio.ScalarImage(tensor=target[0].cpu()))
        flipped: tio.Subject = tio.RandomFlip(axes=(2,), flip_probability=FLIP_PROBABILITY)(pair)
        flips = [t for t in flipped.get_applied_transforms() if isinstance(t, tio.Flip)]
        onehot = atlas_onehot[0].cpu()
        for flip in flips:
            onehot = flip(tio.ScalarImage(tensor=onehot)).data
        deform = tio.Compose([
            tio.RandomAffine(scales=SCALES, degrees=DEGREES, default_pad_value="minimum", p=AFFINE_PROBABILITY),
            tio.RandomElasticDeformation(
                num_control_points=CONTROL_POINTS, max_displacement=MAX_DISPLACEMENT_AT_128 * size / 128,
                p=ELASTIC_PROBABILITY,
            ),
        ])
        flipped_atlas, flipped_target = flipped["atlas"], flipped["target"]
        assert isinstance(flipped_atlas, tio.ScalarImage) and isinstance(flipped_target, tio.ScalarImage)
        moved = deform(flipped_target).data
    return (
        flipped_atlas.data[None].to(device).float(),
        onehot[None].to(device).float().contiguous(),
        moved[None].to(device).float().clamp(0.0, 1.0),
    )
