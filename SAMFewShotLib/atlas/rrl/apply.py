"""Applying a trained RRL-MedSAM bundle to an image: one forward pass of the segmentation path.

The image is resampled to the network's cube (:mod:`.cube`, size from the bundle), normalised as
the bundle says, segmented (general branch -> coarse mask -> auto-prompted medical branch),
the logits are upsampled to the cube and arg-maxed, class i becomes label ``label_values[i - 1]``,
and the labels are resampled (nearest neighbour) back onto the image's own grid and geometry.
Segment names, colours and terminology come from the bundle. (Optional SAM refinement of the
result is :func:`SAMFewShotLib.atlas.apply.apply_bundle`'s job.)
"""

from __future__ import annotations

import numpy as np
import torch

from ...progress import CancelToken, Progress, no_progress
from ...volume import LabelVolume, Volume, label_dtype
from .cube import cube_tensor, labels_from_cube
from .network_file import NETWORK_MEMBER, load_network
from .training import resolve_device

#: Progress stage of :func:`apply_rrl` (steps: load, forward, resample).
STAGE = "RRL-MedSAM"


def apply_rrl(
    bundle, image: Volume, *, device: str = "auto", progress: Progress = no_progress, cancel: CancelToken | None = None
) -> LabelVolume:
    """Segment ``image`` with the ``rrl_medsam`` bundle ``bundle`` (an :class:`..bundle.AtlasBundle`).

    Returns:
        Labels (z, y, x) on ``image``'s grid with its spacing, origin and direction; values are the
        bundle's label values, segments the bundle's labels.

    Raises:
        ValueError: the bundle is not an ``rrl_medsam`` bundle or its network file is unusable;
            bad ``device``.
    """
    if bundle.engine != "rrl_medsam":
        raise ValueError(f"{bundle.path}: engine is {bundle.engine!r}, not 'rrl_medsam'")
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
        out = model.segment(tensor.to(torch_device))
        classes = model.upsample_logits(out.medical_logits).argmax(dim=1)[0].cpu().numpy()
    progress(STAGE, 2, 3)
    if cancel is not None:
        cancel.raise_if_cancelled()
    table = np.array([0, *values], dtype=np.int64)
    labels = table[classes].astype(label_dtype(max(values)))
    result = labels_from_cube(LabelVolume(cube.with_array(labels), bundle.segments()), image)
    progress(STAGE, 3, 3)
    return result
