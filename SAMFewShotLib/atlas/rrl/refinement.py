"""Test-time refinement of RRL-MedSAM's predicted displacement (an option, off by default).

*Not in the paper* (Wang et al., arXiv 2504.20501, apply a trained RRL-MedSAM in one forward
pass). It is the instance-specific optimisation that learnt registration is often followed
by: the network's displacement of the atlas onto one image (working grid, voxels) is the
starting point of ``iterations`` Adam steps on the displacement field itself (the network's
weights are untouched), minimising the registration's own unsupervised training terms for that
one pair::

    lambda1 * smoothness(flow) + lambda2 * NCC(warped atlas, image)

(:func:`.losses.smoothness_loss`, :func:`.losses.ncc_loss`; the weights and NCC window are the
bundle's training settings). The Dice term is left out: it would pull the displacement towards
the network's own segmentation. Used by ``apply_rrl(output="registration", refine_iterations=N)``
(``samfewshot atlas apply ... --rrl-output registration --rrl-refine N``); the README gives its
measured effect on the real-CT benchmark, with a trained and an untrained network, so that what
the refinement adds and what the learnt displacement adds are told apart.
"""

from __future__ import annotations

import torch

from ...errors import InputError
from ...progress import CancelToken, Progress, no_progress
from .losses import ncc_loss, smoothness_loss
from .spatial_transformer import warp

#: Adam's step on the displacement, working-grid voxels (measured on the abdominal CT, 64^3
#: working grid: 0.05 reaches the optimum of NCC + smoothness in about 100 steps, stably).
DEFAULT_STEP_VOXELS = 0.05
#: Progress stage of :func:`refine_flow` (one step per iteration).
STAGE = "RRL-MedSAM refinement"


def check_refine_iterations(iterations: object) -> int:
    """``iterations`` as an int >= 0, or InputError naming the value."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise InputError(f"refinement iterations must be an integer >= 0, not {iterations!r}")
    return iterations


def refine_flow(
    flow: torch.Tensor,
    moving: torch.Tensor,
    fixed: torch.Tensor,
    iterations: int,
    *,
    lambda_smooth: float = 1.0,
    lambda_ncc: float = 1.0,
    ncc_window: int = 9,
    step: float = DEFAULT_STEP_VOXELS,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> torch.Tensor:
    """The displacement ``flow`` refined for one pair (module docstring).

    Args:
        flow: (1, 3, D, H, W) displacement moving -> fixed in voxels of that grid, channels
            (dz, dy, dx), defined on the fixed grid (:mod:`.spatial_transformer`).
        moving, fixed: (1, 1, D, H, W) float32 images on the same grid (the atlas and the target).
        iterations: Adam steps (0: ``flow`` returned as a copy).
        lambda_smooth, lambda_ncc, ncc_window: the loss weights and the NCC window (voxels, odd).
        step: Adam's learning rate, voxels.
        progress: ``progress(STAGE, done, iterations)``.
        cancel: polled before every step.

    Returns:
        A new (1, 3, D, H, W) float32 tensor without gradient; the inputs are not modified.
    """
    iterations = check_refine_iterations(iterations)
    if flow.shape[1] != 3 or flow.shape[2:] != fixed.shape[2:] or moving.shape != fixed.shape:
        raise ValueError(
            f"flow (1, 3, D, H, W) and images (1, 1, D, H, W) on one grid needed, not {tuple(flow.shape)}, "
            f"{tuple(moving.shape)}, {tuple(fixed.shape)}"
        )
    with torch.inference_mode(False), torch.enable_grad():
        # clones: tensors made under inference mode cannot take part in autograd
        moving, fixed = moving.detach().clone(), fixed.detach().clone()
        field = flow.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([field], lr=step)
        progress(STAGE, 0, iterations)
        for done in range(1, iterations + 1):
            if cancel is not None:
                cancel.raise_if_cancelled()
            loss = lambda_ncc * ncc_loss(fixed, warp(moving, field), ncc_window) + lambda_smooth * smoothness_loss(
                field
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            progress(STAGE, done, iterations)
        return field.detach()
