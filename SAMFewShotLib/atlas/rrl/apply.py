"""Applying a trained RRL-MedSAM bundle to an image: one forward pass.

The image is resampled to the network's cube (:mod:`.cube`, size from the bundle) and normalised
as the bundle says. Two outputs:

- ``"segmentation"`` (default, the paper's result): the segmentation path (general branch ->
  coarse mask -> auto-prompted medical branch); logits upsampled to the cube and arg-maxed;
- ``"registration"``: the joint forward with the bundle's atlas; the atlas labels (one-hot on the
  cube) warped by the displacement upsampled to the cube, arg-maxed. After short trainings the
  warped atlas labels are the better of the two (``benchmarks/bench_rrl_real.py``: abdominal CT
  with known deformations, 128^3, 300 iterations: mean Dice 0.793 against 0.776 for the
  segmentation path on a held-out image). ``refine_iterations`` > 0 refines that displacement
  for this one image before warping (:mod:`.refinement`: test-time optimisation, not in the
  paper, off by default).

Class i becomes label ``label_values[i - 1]`` and the labels are resampled (nearest neighbour)
back onto the image's own grid and geometry; segment names, colours and terminology come from
the bundle. (Optional SAM refinement is :func:`SAMFewShotLib.atlas.apply.apply_bundle`'s job.)
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import InputError
from ...progress import CancelToken, Progress, no_progress
from ...volume import LabelVolume, Volume, label_dtype
from .cube import cube_tensor, labels_from_cube, labels_to_cube, one_hot
from .network_file import NETWORK_MEMBER, load_network
from .refinement import check_refine_iterations, refine_flow
from .spatial_transformer import resize_flow, warp
from .training import resolve_device

#: What :func:`apply_rrl` can return.
OUTPUTS = ("segmentation", "registration")

#: Progress stage of :func:`apply_rrl` (steps: load, forward, resample).
STAGE = "RRL-MedSAM"


def apply_rrl(
    bundle,
    image: Volume,
    *,
    device: str = "auto",
    output: str | None = None,
    refine_iterations: int = 0,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> LabelVolume:
    """Segment ``image`` with the ``rrl_medsam`` bundle ``bundle`` (an :class:`..bundle.AtlasBundle`).

    ``output``: "segmentation" or "registration" (see the module docstring); None: the bundle's
    ``parameters["output"]``, else "segmentation". ``refine_iterations``: test-time refinement
    steps of the registration output's displacement (:mod:`.refinement`; 0 = none, the paper's
    one forward pass; > 0 only with the registration output).

    Returns:
        Labels (z, y, x) on ``image``'s grid with its spacing, origin and direction; values are the
        bundle's label values, segments the bundle's labels.

    Raises:
        ValueError: the bundle is not an ``rrl_medsam`` bundle or its network file is unusable;
            bad ``device``; refinement asked for the segmentation output or a negative count.
    """
    if bundle.engine != "rrl_medsam":
        raise InputError(f"{bundle.path}: engine is {bundle.engine!r}, not 'rrl_medsam'")
    output = output or bundle.parameters.get("output", "segmentation")
    if output not in OUTPUTS:
        raise InputError(f"RRL-MedSAM output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    if check_refine_iterations(refine_iterations) and output != "registration":
        raise InputError(
            f"refinement ({refine_iterations} iterations) applies to the registration output, not to {output!r}"
        )
    torch_device = resolve_device(device)
    progress(STAGE, 0, 3)
    model, values = load_network(bundle.weights_path(NETWORK_MEMBER))
    model.to(torch_device)
    size = model.config.size
    tensor, cube = cube_tensor(image, size, bundle.normalisation)
    progress(STAGE, 1, 3)
    if cancel is not None:
        cancel.raise_if_cancelled()
    with torch.inference_mode():
        if output == "segmentation":
            out = model.segment(tensor.to(torch_device))
            classes = model.upsample_logits(out.medical_logits).argmax(dim=1)[0].cpu().numpy()
        else:
            classes = _warped_atlas_classes(
                model, bundle, values, tensor.to(torch_device), refine_iterations, progress, cancel
            )
    progress(STAGE, 2, 3)
    if cancel is not None:
        cancel.raise_if_cancelled()
    table = np.array([0, *values], dtype=np.int64)
    labels = table[classes].astype(label_dtype(max(values)))
    result = labels_from_cube(LabelVolume(cube.with_array(labels), bundle.segments()), image)
    progress(STAGE, 3, 3)
    return result


def _warped_atlas_classes(
    model, bundle, values: list[int], target: torch.Tensor, refine_iterations: int, progress: Progress,
    cancel: CancelToken | None,
) -> np.ndarray:
    """(S, S, S) class indices of the bundle's atlas labels warped onto the cube ``target``
    (the displacement refined first with ``refine_iterations`` > 0)."""
    size = model.config.size
    atlas_image, atlas_labels = bundle.atlas(0)
    atlas, _ = cube_tensor(atlas_image, size, bundle.normalisation)
    out = model(atlas.to(target.device), target)
    flow = out.flow
    if refine_iterations:
        settings = bundle.parameters.get("settings", {})
        flow = refine_flow(
            flow, out.moving, out.fixed, refine_iterations, lambda_smooth=settings.get("lambda_smooth", 1.0),
            lambda_ncc=settings.get("lambda_ncc", 1.0), ncc_window=settings.get("ncc_window", 9),
            progress=progress, cancel=cancel,
        )
    onehot = one_hot(labels_to_cube(atlas_labels, size).array, values).to(target.device)
    return warp(onehot, resize_flow(flow, (size,) * 3)).argmax(dim=1)[0].cpu().numpy()
