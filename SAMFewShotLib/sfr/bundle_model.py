"""The ``sfr`` engine of atlas bundles: a study model's 3D network in ``weights/sfr_network.pt``,
its working spacing and patch in the manifest's parameters, the labelled volume as the bundle's
atlas. ``samfewshot atlas apply`` and ``batch`` run it through :func:`apply_sfr`."""

from __future__ import annotations

from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress
from ..volume import LabelVolume, Volume
from .network import NETWORK_MEMBER, load_network
from .resampling import check_spacing

ENGINE = "sfr"


def apply_sfr(
    bundle, image: Volume, *, device: str = "auto", progress: Progress = no_progress, cancel: CancelToken | None = None
) -> LabelVolume:
    """Segment ``image`` (z, y, x, any grid) with an ``sfr`` bundle; labels on the image's grid with
    the bundle's segments.

    Raises:
        ValueError: not an sfr bundle, parameters missing or bad, bad device.
    """
    from ..atlas.rrl.training import resolve_device
    from .inference import segment

    if bundle.engine != ENGINE:
        raise InputError(f"{bundle.path}: is a {bundle.engine} bundle, not an {ENGINE} study model")
    parameters = bundle.parameters
    try:
        spacing = check_spacing(parameters["spacing_mm"])
        patch = int(parameters["patch"])
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{bundle.path}: the sfr parameters need spacing_mm and patch ({error})") from None
    network, _, label_values = load_network(bundle.weights_path(NETWORK_MEMBER))
    labels = segment(
        network, image, label_values=label_values, spacing=spacing, normalisation=bundle.normalisation, patch=patch,
        device=resolve_device(device), progress=progress, cancel=cancel,
    )
    return LabelVolume(labels, bundle.segments())
